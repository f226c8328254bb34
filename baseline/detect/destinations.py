"""Where the fleet already talks: which hosts connected out to an address and port.

`destination_host (span, remote, port, host) → first_bucket, last_bucket` is folded with
presence from every outbound connection (not only a bucket's first), and pruned with
it. For a candidate that could fire, the rule asks of its first connection's address
and port: how many *other* hosts used it within the baseline window (counted up to
`KNOWN_BY`) that never ran this binary's path, whether this host did, and how many other
hosts that ran this path talked there (by this binary or another: hosts, not processes,
are remembered per destination). It answers the investigation guide ("is the
destination used by normal workflows?") on every signal, and is evidence for one kind
of binary (docs/scoring.md "Fresh installs and familiar destinations"): a program a
person or a package put on the host — a home directory or a package-managed path, no
shell, interpreter or dual-use tool — whose first connection goes where at least two
other hosts already talk, on that port. A tool installed today talking 443 to the
code host the CI runners use is not a reverse shell to a never-seen address on 4444.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rarenet.baseline.detect.destination import destination_kind
from rarenet.baseline.detect.lineage import lives_off_the_land
from rarenet.baseline.detect.scoring import indicator
from rarenet.baseline.shells import UNSET_REMOTES, sql_list
from rarenet.extension.locations import Location, classify, may_roll_out

if TYPE_CHECKING:
    from rarenet.baseline.detect.features import Gathered

KNOWN_BY = 2  # other hosts that make a destination one the fleet talks to


@dataclass(frozen=True)
class KnownDestination:
    """A candidate's first connection and who used its address and port before."""

    address: str
    port: int
    others: int  # other hosts that used it in the window (counted up to KNOWN_BY)
    here: bool  # this host used it in the window (any binary)
    evidence: bool  # it lowered the score (the binary is one it may speak for)
    binary_elsewhere: int = 0  # other hosts that ran this path and used it (up to KNOWN_BY)

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "kind": destination_kind(self.address),
            "other_hosts_before": self.others,
            "other_hosts_at_least": self.others >= KNOWN_BY,
            "this_host_before": self.here,
            "binary_elsewhere_before": self.binary_elsewhere,
            "binary_elsewhere_at_least": self.binary_elsewhere >= KNOWN_BY,
            "familiar": self.evidence,
        }

    def sentence(self) -> str:
        """ "its destination 192.0.2.12:443 is one 2+ other hosts use" (or never used)."""
        where = f"{self.address}:{self.port}"
        if not self.others:
            return f"no other host used its destination {where} before"
        more = "+" if self.others >= KNOWN_BY else ""
        return f"its destination {where} is one {self.others}{more} other host(s) use for other programs"


def remember_destinations(conn: sqlite3.Connection, span: int) -> None:
    """Fold the outbound connections of `temp.new_links` (the fold's new observations,
    baseline/detect/presence.py) into `destination_host`."""
    conn.execute(
        "INSERT INTO destination_host (span, remote, port, host, first_bucket, last_bucket) "
        "SELECT :span, remote, port, host, min(first_bucket), max(last_bucket) "
        "FROM temp.new_links WHERE direction = 'outbound' AND remote IS NOT NULL "
        f"AND remote NOT IN ({sql_list(UNSET_REMOTES)}) "
        "GROUP BY remote, port, host "
        "ON CONFLICT (span, remote, port, host) DO UPDATE SET "
        "first_bucket = min(first_bucket, excluded.first_bucket), "
        "last_bucket = max(last_bucket, excluded.last_bucket)",
        {"span": span},
    )


def hosts_before(
    conn: sqlite3.Connection, span: int, asks: Sequence[Sequence[Any]]
) -> list[list[Any]]:
    """Per [host, remote, port, low, high, path]: [other hosts that used remote:port
    within [low, high) and had not run `path` before `high` (up to KNOWN_BY) — the fleet
    talks there for reasons of its own, not because this binary spread there — whether
    `host` did, and other hosts that had run `path` and used it (up to KNOWN_BY)]."""
    out = []
    for host, remote, port, low, high, path in asks:
        counted = [
            conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM destination_host AS d WHERE d.span = ? "
                "AND d.remote = ? AND d.port = ? AND d.host != ? AND d.first_bucket < ? "
                f"AND d.last_bucket >= ? AND {negate} EXISTS (SELECT 1 FROM key_host AS k "
                "WHERE k.span = d.span AND k.kind = 'path' AND k.key = ? AND k.host = d.host "
                "AND k.first_bucket < ?) LIMIT ?)",
                (span, remote, port, host, high, low, path, high, KNOWN_BY),
            ).fetchone()[0]
            for negate in ("NOT", "")
        ]
        here = conn.execute(
            "SELECT 1 FROM destination_host WHERE span = ? AND remote = ? AND port = ? "
            "AND host = ? AND first_bucket < ? AND last_bucket >= ?",
            (span, remote, port, host, high, low),
        ).fetchone()
        out.append([int(counted[0]), here is not None, int(counted[1])])
    return out


def forget_destinations(conn: sqlite3.Connection, span: int, before: int) -> None:
    """Drop destinations no host used since `before` (pruned with presence)."""
    conn.execute("DELETE FROM destination_host WHERE span = ? AND last_bucket < ?", (span, before))


def may_vouch(name: str, path: str) -> bool:
    """Whether a familiar destination may speak for this binary: one a person (home
    directory) or a package put on the host — never a shell, a script interpreter, a
    dual-use network tool, or anything in a volatile, hidden or unknown place."""
    if lives_off_the_land(name):
        return False
    return classify(path) is Location.USER or may_roll_out(name, path)


@dataclass(frozen=True)
class FirstConnection:
    """A candidate's first connection in its bucket: where to, which way, as whom."""

    remote: str
    port: int
    direction: str
    user: str
    uid: int = -1  # -1: osquery gave none


def first_connections(gathered: Gathered, asked: Iterable[int]) -> dict[int, FirstConnection]:
    """Per candidate index in `asked`: its first connection (none once retention pruned
    the observation), read from the shard that holds its host."""
    found: dict[int, FirstConnection] = {}
    for source, mine in gathered.by_source(asked):
        firsts = [gathered.candidates[i].first_id for i in mine]
        for i, row in zip(mine, source.first_endpoints(firsts), strict=True):
            if row is not None:
                remote, port, direction, user, *rest = row  # an older shard sends no uid
                uid = rest[0] if rest else None
                found[i] = FirstConnection(
                    str(remote or ""),
                    int(port or 0),
                    str(direction),
                    str(user or ""),
                    -1 if uid is None else int(uid),
                )
    return found


def ask_destinations(
    gathered: Gathered, firsts: dict[int, FirstConnection], span: int, history: int
) -> dict[int, KnownDestination]:
    """Per candidate in `firsts`: its first connection's destination and who used it in
    the candidate's baseline window (outbound connections with an address only)."""
    endpoints = {
        i: (first.remote, first.port)
        for i, first in firsts.items()
        if first.direction == "outbound" and first.remote not in UNSET_REMOTES
    }
    if not endpoints:
        return {}
    order = sorted(endpoints)
    asks = [
        [
            gathered.candidates[i].host,
            *endpoints[i],
            gathered.candidates[i].bucket - history,
            gathered.candidates[i].bucket,
            gathered.candidates[i].path,
        ]
        for i in order
    ]
    others, here, binary = [0] * len(order), [False] * len(order), [0] * len(order)
    for source in gathered.sources:
        for n, (count, used, *same) in enumerate(source.destination_hosts(span, asks)):
            others[n] = min(KNOWN_BY, others[n] + int(count))
            here[n] = here[n] or bool(used)
            binary[n] = min(KNOWN_BY, binary[n] + int(same[0] if same else 0))
    found_all = {}
    for n, i in enumerate(order):
        cand = gathered.candidates[i]
        familiar = others[n] >= KNOWN_BY and may_vouch(cand.name, cand.path)
        found_all[i] = KnownDestination(*endpoints[i], others[n], here[n], familiar, binary[n])
    return found_all


def with_destinations(gathered: Gathered, found: dict[int, KnownDestination]) -> Gathered:
    """`gathered` with the destinations, and v = 1 where a familiar one vouches."""
    if not found:
        return gathered
    vouched = indicator(len(gathered.candidates), (i for i, d in found.items() if d.evidence))
    features = replace(gathered.features, familiar_destination=vouched)
    return replace(gathered, features=features, destinations=found)
