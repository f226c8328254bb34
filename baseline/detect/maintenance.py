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
from rarenet.baseline.detect.memory import forget_before
from rarenet.baseline.detect.presence import prune_presence
from rarenet.baseline.store import Store

REPLAY_KEY = "replay"  # store_state: this store holds a replay (rarenet demo)


def mark_replay(store: Store, what: str) -> None:
    """Say in the store that it holds a replay of old data (`what`: which command wrote
    it): its data is then pruned back from its own newest data time, not from now, so a
    `rarenet serve` opened on it later keeps what it shows."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO store_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (REPLAY_KEY, what),
        )


def replay_of(store: Store) -> str | None:
    """Which command wrote the replay this store holds; None for a live store."""
    row = store.conn.execute(
        "SELECT value FROM store_state WHERE key = ?", (REPLAY_KEY,)
    ).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class Pruned:
    observations: int
    presence: int
    quarantine: int = 0
    signals: int = 0


def prune_once(store: Store, config: Config, now: int | None = None) -> Pruned:
    """Delete observations older than `[store] retention` and presence older than the
    baseline needs (history + look-back), and the memory of binaries not used on a host
    within `[detect] memory`, at data time `now` (for a replay's store, `mark_replay`:
    at its newest data time, if older); quarantined lines received
    longer than `retention` ago and signals raised longer than `signal_retention` ago
    (wall time: neither carries a data time of its own)."""
    wall = int(time.time())
    now = wall if now is None else int(now)
    if replay_of(store) is not None:  # old data on purpose: kept back from its newest
        newest = store.conn.execute("SELECT max(time) FROM observations").fetchone()[0]
        now = min(now, int(newest)) if newest is not None else now
    observations = store.prune_observations(now - int(config.store.retention))
    span = max(1, int(config.detect.bucket_span))
    keep_from = now - int(config.detect.history) - int(config.detect.lookback) - span
    presence = prune_presence(store, span, (keep_from // span) * span)
    with store.transaction() as conn:
        forget_before(conn, span, now - int(config.detect.memory))
    quarantine = store.prune_quarantine(wall - int(config.store.retention))
    keep = int(config.store.signal_retention)
    signals = prune_signals(store, wall - keep) if keep else 0
    return Pruned(observations, presence, quarantine, signals)


def prune_signals(store: Store, before: float) -> int:
    """Delete signals raised before `before` (wall time) with their deliveries,
    acknowledgements, triage, comments and audit rows, in batches (each its own transaction)."""
    removed = 0
    while True:
        with store.transaction() as conn:
            ids = [
                sid
                for (sid,) in conn.execute(
                    "SELECT id FROM signals WHERE created_at < ? LIMIT 5000", (before,)
                )
            ]
            if not ids:
                return removed
            rows = [(sid,) for sid in ids]
            conn.executemany("DELETE FROM deliveries WHERE signal_id = ?", rows)
            conn.executemany("DELETE FROM signal_acks WHERE signal_id = ?", rows)
            conn.executemany("DELETE FROM signal_triage WHERE signal_id = ?", rows)
            conn.executemany("DELETE FROM signal_comments WHERE signal_id = ?", rows)
            conn.executemany("DELETE FROM audit WHERE target = 'signal:' || ?", rows)
            conn.executemany("DELETE FROM signals WHERE id = ?", rows)
            removed += len(ids)


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
