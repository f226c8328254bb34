"""Decide every candidate of a run, and say why: the rule's verdicts.

In order (earliest bucket first, highest score first): learning (warm-up), below the
threshold, excepted, already signalled (same id), suppressed (this host already has a
signal for this executable within `suppress_for`, or the executable has an open signal
on this host and was in use there within `suppress_for`: it is still going on), one
host of a rollout (counted on the rollout's one signal), or a new signal. A binary with
an open signal that comes back after `suppress_for` without use is a new signal in the
first visit's group, saying so (`returning`; baseline/detect/suspects.py). The fleet
dimension is grouping, never silence: signals of one executable on several hosts within
`suppress_for` share a `group` id and each names the others. `rarenet explain` shows
these same verdicts.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.exceptions import Exception_
from rarenet.baseline.detect.features import Candidate, Gathered
from rarenet.baseline.detect.scoring import Scores
from rarenet.baseline.detect.signal import RULE_ID, Detail, signal_id
from rarenet.baseline.detect.suspects import Suspect
from rarenet.baseline.units import format_time
from rarenet.extension.scoring import ADOPTION_SHARE

ROLLOUT_SCORE = 60.0  # a rollout's one signal: worth one look, never outranks an implant
GROUP_NAMES = 5  # hosts named in a reason; the document lists them all


class Outcome(Enum):
    """What the rule did with a candidate."""

    LEARNING = "learning"
    BELOW = "below threshold"
    EXCEPTED = "excepted"
    EXISTS = "already signalled"
    SUPPRESSED = "suppressed"
    ROLLOUT = "rollout"
    SIGNALLED = "signalled"
    TRUNCATED = "truncated"


@dataclass(frozen=True)
class Member:
    """Another host of a group: where and when the executable was signalled."""

    host: str
    bucket: int
    signal: str

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "at": format_time(self.bucket), "signal": self.signal}


@dataclass(frozen=True)
class Verdict:
    """The rule's decision for one candidate, with what it points at."""

    index: int
    outcome: Outcome
    score: float
    signal: str | None = None  # created, counted on, or the one that already exists
    exception: Exception_ | None = None
    group: str | None = None
    others: tuple[Member, ...] = ()  # other hosts of the group, earliest first
    returning: Suspect | None = None  # the open signals this binary comes back to


@dataclass(frozen=True)
class NewSignal:
    """A signal the run will store (unless `max_signals` truncates it)."""

    sid: str
    index: int
    bucket: int
    score: float
    group: str
    rollout: bool
    others: tuple[Member, ...]
    detail: Detail | None
    returning: Suspect | None = None


@dataclass
class Decisions:
    """Everything a run decided: verdicts per candidate index, what it will write."""

    verdicts: dict[int, Verdict] = field(default_factory=dict)
    new: list[NewSignal] = field(default_factory=list)
    bumps: Counter[str] = field(default_factory=Counter)
    exception_hits: Counter[int] = field(default_factory=Counter)


def executable(cand: Candidate) -> str:
    """The key signals are suppressed and grouped by: the path, else the name."""
    return cand.path or cand.name


def decide(
    conn: sqlite3.Connection,
    settings: DetectSettings,
    gathered: Gathered,
    scores: Scores,
    exceptions: list[Exception_],
    detail_of: Callable[[int], Detail | None],
    only: set[int] | None = None,
) -> Decisions:
    """Verdicts for the candidates worth deciding (all of `only` when given, for explain).
    `detail_of(i)`: candidate i's first connection. Reads the store; writes nothing."""
    walk = _Walk(conn, settings, gathered, scores, exceptions, detail_of)
    cands, threshold = gathered.candidates, settings.threshold
    # A rollout host: only the rollout discount keeps it under the threshold (a schedule,
    # a familiar destination or a peer's use may already have).
    member = (scores.rollout > 0) & (scores.evidenced >= threshold) & (scores.score < threshold)
    worth = gathered.warm & ((scores.score >= threshold) | member)
    for i in set(only or ()) - set(np.flatnonzero(worth).tolist()):
        walk.decisions.verdicts[i] = Verdict(
            i,
            Outcome.BELOW if gathered.warm[i] else Outcome.LEARNING,
            float(scores.score[i]),
        )
    order = sorted(
        np.flatnonzero(worth).tolist(),
        key=lambda i: (cands[i].bucket, -scores.unrolled[i], -scores.score[i], i),
    )
    for i in order:
        walk.one(i, bool(member[i]))
    walk.name_members()
    decisions = walk.decisions
    decisions.new.sort(key=lambda s: (-s.score, s.bucket, s.sid))
    for dropped in decisions.new[settings.max_signals :]:
        old = decisions.verdicts[dropped.index]
        decisions.verdicts[dropped.index] = Verdict(
            dropped.index, Outcome.TRUNCATED, old.score, dropped.sid, group=old.group
        )
    del decisions.new[settings.max_signals :]
    return decisions


class _Walk:
    """The state of one pass over a run's candidates."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        settings: DetectSettings,
        gathered: Gathered,
        scores: Scores,
        exceptions: list[Exception_],
        detail_of: Callable[[int], Detail | None],
    ) -> None:
        self.conn, self.settings, self.gathered, self.scores = conn, settings, gathered, scores
        self.exceptions, self.detail_of = exceptions, detail_of
        self.window = int(settings.suppress_for)
        # A rollout's one signal counts its hosts for as long as the path is adopted.
        self.rollout_window = max(self.window, int(settings.history * ADOPTION_SHARE))
        self.decisions = Decisions()
        self.claimed: dict[tuple[str, str], str] = {}  # (host, executable) → signal this run
        self.run_members: dict[str, list[tuple[Member, str]]] = {}  # executable → (member, group)

    def one(self, i: int, rollout: bool) -> None:
        cand = self.gathered.candidates[i]
        value = float(self.scores.score[i])
        detail = self.detail_of(i)
        hit = next((e for e in self.exceptions if _matches(e, cand, detail)), None)
        verdicts = self.decisions.verdicts
        if hit is not None:
            self.decisions.exception_hits[hit.id] += 1
            verdicts[i] = Verdict(i, Outcome.EXCEPTED, value, exception=hit)
            return
        exe = executable(cand)
        sid = signal_id(cand.host, cand.name, cand.path, cand.bucket)
        stored = _stored_group(self.conn, sid)
        if stored is not None:
            others = self.members(exe, cand.bucket, stored, exclude=cand.host)
            verdicts[i] = Verdict(i, Outcome.EXISTS, value, sid, group=stored, others=others)
            return
        if rollout:
            self.rollout_member(i, cand, exe, sid, detail)
            return
        holder = self.claimed.get((cand.host, exe)) or _latest(
            self.conn, exe, cand.bucket, self.window, host=cand.host
        )
        suspect = self.gathered.suspect(i)
        if not holder and suspect is not None and self.going_on(i, cand, exe):
            holder = suspect.latest_signal  # still in use: counted on its open signal
        if holder:
            self.decisions.bumps[holder] += 1
            verdicts[i] = Verdict(i, Outcome.SUPPRESSED, value, holder, returning=suspect)
            return
        if suspect is not None:  # back after a quiet spell: the first visit's group
            self.signal(i, cand, exe, sid, suspect.group, value, False, detail, suspect)
            return
        group = self.group_of(exe, cand.bucket, cand.host) or sid
        self.signal(i, cand, exe, sid, group, value, False, detail)

    def name_members(self) -> None:
        """After the walk: each new signal names every other host of its group up to
        its bucket — stored, or new in this run in whatever order it was decided — so
        a signal's reason does not depend on the order of the walk and `explain` finds
        the same hosts afterwards."""
        decisions = self.decisions
        for n, new in enumerate(decisions.new):
            cand = self.gathered.candidates[new.index]
            others = self.members(executable(cand), new.bucket, new.group, exclude=cand.host)
            decisions.new[n] = replace(new, others=others)
            decisions.verdicts[new.index] = replace(decisions.verdicts[new.index], others=others)

    def going_on(self, i: int, cand: Candidate, exe: str) -> bool:
        """Whether the host used `exe` within `suppress_for` before this bucket."""
        span = max(1, int(self.settings.bucket_span))
        last = self.gathered.source_of(i).last_seen(span, cand.host, exe, cand.bucket)
        return last is not None and last >= cand.bucket - self.window

    def rollout_member(
        self, i: int, cand: Candidate, exe: str, sid: str, detail: Detail | None
    ) -> None:
        """One host of a rollout: counted on the rollout's signal, or raising it."""
        leader = self.latest_any(exe, cand.bucket)
        evidenced = float(self.scores.evidenced[i])
        if leader is not None:
            self.decisions.bumps[leader[0]] += 1
            self.decisions.verdicts[i] = Verdict(
                i, Outcome.ROLLOUT, float(self.scores.score[i]), leader[0], group=leader[1]
            )
            return
        score = min(evidenced, ROLLOUT_SCORE)
        self.signal(i, cand, exe, sid, sid, score, True, detail)

    def signal(
        self,
        i: int,
        cand: Candidate,
        exe: str,
        sid: str,
        group: str,
        score: float,
        rollout: bool,
        detail: Detail | None,
        returning: Suspect | None = None,
    ) -> None:
        others = self.members(exe, cand.bucket, group, exclude=cand.host)
        self.decisions.new.append(
            NewSignal(sid, i, cand.bucket, score, group, rollout, others, detail, returning)
        )
        self.decisions.verdicts[i] = Verdict(
            i, Outcome.SIGNALLED, score, sid, group=group, others=others, returning=returning
        )
        self.claimed[cand.host, exe] = sid
        self.run_members.setdefault(exe, []).append((Member(cand.host, cand.bucket, sid), group))

    def latest_any(self, exe: str, bucket: int) -> tuple[str, str] | None:
        """The latest signal (id, group) for `exe` on any host within the rollout window."""
        here = [(m.bucket, m.signal, g) for m, g in self.run_members.get(exe, ())]
        row = _latest_row(self.conn, exe, bucket, self.rollout_window)
        if row is not None:
            here.append(row)
        if not here:
            return None
        _, signal, group = max(here)
        return signal, group

    def group_of(self, exe: str, bucket: int, host: str) -> str | None:
        """The group of the latest signal for `exe` on another host within the window."""
        here = [(m.bucket, g) for m, g in self.run_members.get(exe, ()) if m.host != host]
        row = _latest_row(self.conn, exe, bucket, self.window, other_than=host)
        if row is not None:
            here.append((row[0], row[2]))
        return max(here)[1] if here else None

    def members(self, exe: str, bucket: int, group: str, exclude: str) -> tuple[Member, ...]:
        """Every other host of `group` up to `bucket` in data time (stored signals and
        this run's; a later member, known only from late data, is not this bucket's)."""
        found = {
            m.host: m
            for m in group_members(self.conn, group)
            if m.host != exclude and m.bucket <= bucket
        }
        for member, member_group in self.run_members.get(exe, ()):
            if member_group == group and member.host != exclude and member.bucket <= bucket:
                found.setdefault(member.host, member)
        return tuple(sorted(found.values(), key=lambda m: (m.bucket, m.host)))


def _matches(entry: Exception_, cand: Candidate, detail: Detail | None) -> bool:
    return entry.matches(
        name=cand.name,
        path=cand.path,
        host=cand.host,
        user=detail.username if detail else "",
        address=detail.remote_address if detail else "",
        port=detail.remote_port if detail else 0,
    )


_SAME_EXECUTABLE = "rule = ? AND (path = ? OR (path = '' AND name = ?))"


def _stored_group(conn: sqlite3.Connection, sid: str) -> str | None:
    row = conn.execute("SELECT coalesce(group_id, id) FROM signals WHERE id = ?", (sid,)).fetchone()
    return None if row is None else str(row[0])


def _latest(conn: sqlite3.Connection, exe: str, bucket: int, window: int, host: str) -> str | None:
    """This host's latest signal for `exe` within `window` before `bucket`."""
    row = conn.execute(
        f"SELECT id FROM signals WHERE {_SAME_EXECUTABLE} AND host = ? AND bucket >= ? "
        "AND bucket <= ? ORDER BY bucket DESC LIMIT 1",
        (RULE_ID, exe, exe, host, bucket - window, bucket),
    ).fetchone()
    return str(row[0]) if row else None


def _latest_row(
    conn: sqlite3.Connection, exe: str, bucket: int, window: int, other_than: str | None = None
) -> tuple[int, str, str] | None:
    """(bucket, id, group) of the latest signal for `exe` within `window` before `bucket`,
    on any host or on hosts other than `other_than`."""
    row = conn.execute(
        f"SELECT bucket, id, coalesce(group_id, id) FROM signals WHERE {_SAME_EXECUTABLE} "
        "AND bucket >= ? AND bucket <= ? AND host != ? ORDER BY bucket DESC, id LIMIT 1",
        (RULE_ID, exe, exe, bucket - window, bucket, other_than if other_than is not None else ""),
    ).fetchone()
    return (int(row[0]), str(row[1]), str(row[2])) if row else None


def group_members(conn: sqlite3.Connection, group: str) -> list[Member]:
    """The stored signals of a group, earliest first (one per host: its first)."""
    rows = conn.execute(
        "SELECT host, min(bucket), id FROM signals WHERE group_id = ? OR id = ? "
        "GROUP BY host ORDER BY min(bucket), host",
        (group, group),
    ).fetchall()
    return [Member(str(host), int(bucket), str(sid)) for host, bucket, sid in rows]


def group_sentence(others: tuple[Member, ...]) -> str:
    """ "also on 3 hosts since 14:02: db-01, web-02, ci-03" (empty without others)."""
    if not others:
        return ""
    names = ", ".join(m.host for m in others[:GROUP_NAMES])
    more = f" and {len(others) - GROUP_NAMES} more" if len(others) > GROUP_NAMES else ""
    count = f"{len(others)} other host" + ("" if len(others) == 1 else "s")
    return f"also on {count} since {format_time(others[0].bucket)}: {names}{more}"
