"""Which users ran a binary with the network on a host: the investigation guide's "is
this user expected for this program?", answered on every signal.

`binary_user (span, host, name, path, user) → first_bucket, last_bucket` is folded with
presence from every connection and pruned with it. For a candidate that could fire, the
rule asks whether the user of its first connection ran this binary on this host in the
baseline window before, and which users did (at most `USUAL_SHOWN`). An answer, not
evidence: the score does not change (docs/scoring.md "What a signal says").

One thing about the user is evidence: whether a person (a login account) started the
process (`with_people`, the score's u), for a program a person or a package put on the
host — an app reaching one more workstation (scoring.py `app_share`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rarenet.baseline.detect.destinations import FirstConnection, may_vouch
from rarenet.baseline.detect.lineage import started_by_a_person
from rarenet.baseline.detect.scoring import indicator

if TYPE_CHECKING:
    from rarenet.baseline.detect.features import Gathered

USUAL_SHOWN = 3  # users named as this binary's usual ones on the host


@dataclass(frozen=True)
class UserHistory:
    """The user of a candidate's first connection, and who ran the binary there before."""

    user: str
    before: bool  # this user ran this binary on this host in the window before
    usual: tuple[str, ...]  # users that did (at most USUAL_SHOWN), most recent first

    def as_json(self) -> dict[str, Any]:
        return {"name": self.user, "ran_it_before": self.before, "usual": list(self.usual)}


def remember_users(conn: sqlite3.Connection, span: int) -> None:
    """Fold the users of `temp.new_links` (the fold's new observations, baseline/detect/
    presence.py) into `binary_user`."""
    conn.execute(
        "INSERT INTO binary_user (span, host, name, path, user, first_bucket, last_bucket) "
        "SELECT :span, host, name, path, user, min(first_bucket), max(last_bucket) "
        "FROM temp.new_links GROUP BY host, name, path, user "
        "ON CONFLICT (span, host, name, path, user) DO UPDATE SET "
        "first_bucket = min(first_bucket, excluded.first_bucket), "
        "last_bucket = max(last_bucket, excluded.last_bucket)",
        {"span": span},
    )


def users_before(
    conn: sqlite3.Connection, span: int, asks: Sequence[Sequence[Any]]
) -> list[list[Any]]:
    """Per [host, name, path, user, low, high]: [whether `user` ran the binary on `host`
    within [low, high), the users that did (most recent first, at most USUAL_SHOWN)]."""
    out = []
    for host, name, path, user, low, high in asks:
        rows = conn.execute(
            "SELECT user FROM binary_user WHERE span = ? AND host = ? AND name = ? AND path = ? "
            "AND first_bucket < ? AND last_bucket >= ? ORDER BY last_bucket DESC, user",
            (span, host, name, path, high, low),
        ).fetchall()
        users = [str(row[0]) for row in rows]
        out.append([user in users, users[:USUAL_SHOWN]])
    return out


def forget_users(conn: sqlite3.Connection, span: int, before: int) -> None:
    """Drop users of binaries not run since `before` (pruned with presence)."""
    conn.execute("DELETE FROM binary_user WHERE span = ? AND last_bucket < ?", (span, before))


def ask_users(
    gathered: Gathered, asked: Iterable[int], span: int, history: int, users: dict[int, str]
) -> dict[int, UserHistory]:
    """Per candidate index in `asked` whose first connection's user is in `users`: did
    that user run it on this host before, and who did (asked of the host's shard)."""
    found: dict[int, UserHistory] = {}
    for source, mine in gathered.by_source(set(asked) & set(users)):
        asks = []
        for i in mine:
            c = gathered.candidates[i]
            asks.append([c.host, c.name, c.path, users[i], c.bucket - history, c.bucket])
        for i, (before, usual) in zip(mine, source.binary_users(span, asks), strict=True):
            found[i] = UserHistory(users[i], bool(before), tuple(usual))
    return found


def with_users(gathered: Gathered, found: dict[int, UserHistory]) -> Gathered:
    """`gathered` with the users' histories (no score changes)."""
    return replace(gathered, users=found) if found else gathered


def people_among(gathered: Gathered, firsts: dict[int, FirstConnection]) -> set[int]:
    """The candidates in `firsts` whose first connection a person's process made, for a
    program a person or a package put on the host (never a shell, interpreter or
    dual-use tool: destinations.py `may_vouch`) that has no open signal on its host (a
    binary coming back to its signal is a return, not an app reaching one more host)."""
    cands = gathered.candidates
    return {
        i
        for i, first in firsts.items()
        if started_by_a_person(first.uid)
        and may_vouch(cands[i].name, cands[i].path)
        and gathered.suspect(i) is None
    }


def with_people(gathered: Gathered, people: set[int]) -> Gathered:
    """`gathered` with u = 1 for the candidates in `people`."""
    if not people:
        return gathered
    person = indicator(len(gathered.candidates), people)
    return replace(gathered, features=replace(gathered.features, person=person))
