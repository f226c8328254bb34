"""Which candidates recur on a schedule, asked of the long memory.

Only candidates a schedule could change are asked: those at or above the threshold
(and any `explain` picked), of binaries a schedule may explain (baseline/detect/
schedule.py `eligible`). A binary with an open signal on its host (a suspect: an
attacker's tool until a person says otherwise) is credited only when a scheduler
started this use (cron, anacron, atd, systemd among its ancestors) — an attacker who
comes back by hand a week later to the hour is signalled again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from rarenet.baseline.detect.features import Gathered
from rarenet.baseline.detect.schedule import (
    Recurrence,
    decode,
    eligible,
    recurrence,
    started_by_scheduler,
)


def find_recurring(
    gathered: Gathered, asked: Iterable[int], span: int, memory: int
) -> dict[int, Recurrence]:
    """Per candidate index in `asked` whose use recurs on a schedule that may explain it:
    the recurrence (remembered days within `memory` before its bucket)."""
    by_shard: dict[int, list[int]] = defaultdict(list)
    for i in sorted(set(asked)):
        cand = gathered.candidates[i]
        if eligible(cand.name, cand.path):
            by_shard[0 if gathered.owner is None else int(gathered.owner[i])].append(i)
    found: dict[int, Recurrence] = {}
    for shard, indices in by_shard.items():
        pairs = [[c.host, c.name, c.path] for c in (gathered.candidates[i] for i in indices)]
        for i, days in zip(indices, gathered.sources[shard].remembered(span, pairs), strict=True):
            bucket = gathered.candidates[i].bucket
            found_here = recurrence(bucket, decode(days), since=bucket - memory)
            if found_here is not None and _credited(gathered, i):
                found[i] = found_here
    return found


def with_recurring(gathered: Gathered, found: dict[int, Recurrence]) -> Gathered:
    """`gathered` with r = 1 for the candidates in `found`, and their recurrences."""
    if not found:
        return gathered
    recurring = np.zeros(len(gathered.candidates))
    recurring[list(found)] = 1.0
    features = replace(gathered.features, recurring=recurring)
    return replace(gathered, features=features, recurring=found)


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
