"""Scheduled jobs as plain functions (`detect_once` lives in rule.py) and their wiring.

`prune_once` enforces retention; `build_scheduler` only wires jobs into APScheduler 3.x
(coalesced, one instance at a time, with a misfire grace), so tests call the jobs
directly and the scheduler adds nothing to test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.base import BaseScheduler

from rarenet.baseline.config import Config
from rarenet.baseline.detect.presence import prune_presence
from rarenet.baseline.store import Store


@dataclass(frozen=True)
class Pruned:
    observations: int
    presence: int
    quarantine: int = 0


def prune_once(store: Store, config: Config, now: int | None = None) -> Pruned:
    """Delete observations older than `[store] retention` and presence older than the
    baseline needs (history + look-back), at data time `now`; and quarantined lines
    received longer than `retention` ago (wall time: they carry no data time)."""
    wall = int(time.time())
    now = wall if now is None else int(now)
    observations = store.prune_observations(now - int(config.store.retention))
    span = max(1, int(config.detect.bucket_span))
    keep_from = now - int(config.detect.history) - int(config.detect.lookback) - span
    presence = prune_presence(store, span, (keep_from // span) * span)
    quarantine = store.prune_quarantine(wall - int(config.store.retention))
    return Pruned(observations, presence, quarantine)


def add_jobs(
    scheduler: BaseScheduler,
    config: Config,
    jobs: dict[str, tuple[Callable[[], object], float]],
) -> None:
    """Add each named job to run every `seconds`: coalesced, never two at once, and a
    run that was missed by less than one interval still happens (misfire grace)."""
    del config
    for name, (job, seconds) in jobs.items():
        scheduler.add_job(
            job,
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(seconds)),
            replace_existing=True,
        )
