"""A candidate's history on its host, asked of the long memory: the days it used the
network before, and whether this use recurs on a schedule.

Only candidates a schedule could change or a signal will show are asked: those at or
above the threshold (and any `explain` picked). A schedule counts for binaries it may
explain (baseline/detect/schedule.py `eligible`); for a binary with an open signal on
its host (a suspect: an attacker's tool until a person says otherwise) only when a
scheduler started this use (cron, anacron, atd, systemd among its ancestors) — an
attacker who comes back by hand a week later to the hour is signalled again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from rarenet.baseline.detect.features import Gathered
from rarenet.baseline.detect.schedule import (
    DAY,
    MEMORY_DAYS,
    Recurrence,
    decode,
    eligible,
    recurrence,
    started_by_scheduler,
)
from rarenet.baseline.detect.scoring import indicator
from rarenet.baseline.units import format_time


@dataclass(frozen=True)
class UseHistory:
    """What the long memory says of a candidate's binary on its host before its day."""

    days: int  # days with network use before this one (the memory keeps MEMORY_DAYS)
    first: int | None  # the earliest of them still remembered
    recurring: Recurrence | None  # this use recurs on a schedule that may explain it

    def as_json(self) -> dict[str, Any]:
        return {
            "days_on_host_before": self.days,
            "days_at_least": self.days >= MEMORY_DAYS,
            "first_used_on_host": None if self.first is None else format_time(self.first),
        }


def use_histories(
    gathered: Gathered, asked: Iterable[int], span: int, memory: int
) -> dict[int, UseHistory]:
    """Per candidate index in `asked`: its history on its host (remembered days within
    `memory` before its bucket's day) and whether it recurs."""
    found: dict[int, UseHistory] = {}
    for source, indices in gathered.by_source(asked):
        pairs = [[c.host, c.name, c.path] for c in (gathered.candidates[i] for i in indices)]
        for i, days in zip(indices, source.remembered(span, pairs), strict=True):
            cand = gathered.candidates[i]
            since, today = cand.bucket - memory, cand.bucket - cand.bucket % DAY
            before = [t for t in decode(days) if since <= t < today]
            recurs = None
            if eligible(cand.name, cand.path):
                recurs = recurrence(cand.bucket, before)
                if recurs is not None and not _credited(gathered, i):
                    recurs = None
            found[i] = UseHistory(len(before), min(before, default=None), recurs)
    return found


def with_histories(gathered: Gathered, found: dict[int, UseHistory]) -> Gathered:
    """`gathered` with the histories, and r = 1 for the candidates that recur."""
    if not found:
        return gathered
    recurs = [i for i, history in found.items() if history.recurring is not None]
    features = replace(gathered.features, recurring=indicator(len(gathered.candidates), recurs))
    return replace(gathered, features=features, histories=found)


def _credited(gathered: Gathered, i: int) -> bool:
    """A schedule explains candidate i: always, unless its binary is a suspect on its
    host; then only when a scheduler started it."""
    if gathered.suspect(i) is None:
        return True
    detail = gathered.detail(i)
    if detail is None:
        return False
    names = [detail.parent_name, *(ancestor.name for ancestor in detail.chain)]
    return started_by_scheduler(names)
