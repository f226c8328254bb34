"""Scheduler wiring: jobs are plain functions; APScheduler only runs them on time."""

from __future__ import annotations

import threading
import time

from apscheduler.schedulers.background import BackgroundScheduler

from rarenet.baseline.config import Config
from rarenet.baseline.detect.maintenance import add_jobs


def test_jobs_are_coalesced_single_instance_and_fire(config: Config) -> None:
    fired = threading.Event()
    calls: list[float] = []

    def job() -> None:
        calls.append(time.monotonic())
        fired.set()

    scheduler = BackgroundScheduler(timezone="UTC")
    add_jobs(scheduler, config, {"detect": (job, 1.0), "prune": (lambda: None, 3600.0)})
    jobs = {j.id: j for j in scheduler.get_jobs()}
    assert set(jobs) == {"detect", "prune"}
    assert jobs["detect"].coalesce is True and jobs["detect"].max_instances == 1
    assert jobs["detect"].misfire_grace_time == 1 and jobs["prune"].misfire_grace_time == 3600
    scheduler.start()
    try:
        assert fired.wait(timeout=5), "the 1 s job never ran"
    finally:
        scheduler.shutdown(wait=True)
    assert 1 <= len(calls) <= 6
