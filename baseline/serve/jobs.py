"""The scheduled side of `rarenet serve`: plain `*_once` jobs, wired by APScheduler.

Every job opens its own Store connection (SQLite connections belong to one thread and
APScheduler runs jobs on a pool), does its work in short transactions, and reports to
the metrics. `build_scheduler` only wires them (`maintenance.add_jobs`).
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from rarenet.baseline.collect import Collector, local_host_id, local_host_uuid
from rarenet.baseline.config import Config, DetectSettings
from rarenet.baseline.deliver import DeliveryReport, deliver_once
from rarenet.baseline.deliver.outbox import webhook_trouble
from rarenet.baseline.deliver.webhooks import configured_webhooks
from rarenet.baseline.detect.maintenance import add_jobs, prune_once
from rarenet.baseline.detect.presence import refresh_presence
from rarenet.baseline.detect.rule import RunResult
from rarenet.baseline.detect.shards import detect_configured
from rarenet.baseline.detect.silence import catch_up, stalled_sentence
from rarenet.baseline.errors import StoreError
from rarenet.baseline.ingest.chunks import ChunkCounts, build_parser
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.serve.bodies import init_child
from rarenet.baseline.serve.heartbeat import Heartbeat
from rarenet.baseline.serve.metrics import Metrics
from rarenet.baseline.serve.snapshots import SnapshotCache
from rarenet.baseline.store import Store
from rarenet.baseline.store.health import HealthRecord
from rarenet.baseline.units import format_age, format_time

log = logging.getLogger("rarenet.serve")


DETECT_NICENESS = 10  # acknowledging posts is latency-bound (Fleet never retries); a run is not


def init_detector(server: int) -> None:
    """The detection child: a child of the server (`init_child`) that yields the CPU to
    ingest — a run has a whole interval to finish, a post has a sender waiting."""
    init_child(server)
    os.nice(DETECT_NICENESS)


def detect_in_process(db_path: str, settings: DetectSettings) -> RunResult:
    """One detection run on its own connection (the detection child's entry point)."""
    with Store(db_path, autocheckpoint=False) as store:
        # the parent folds its own store, gated; shards fold their own when asked
        return detect_configured(store, settings, refresh=False)


TAIL_EVERY = 5.0  # seconds between reads of [ingest] files
FOLD_EVERY = 2.0  # seconds between presence folds (keeps each detection run short)
FOLD_HOLD = 0.05  # seconds one fold transaction should hold the write lock
FOLD_MIN_STEP, FOLD_MAX_STEP = 2_000, 200_000  # observation ids per fold transaction
FOLD_PAUSE = 0.02  # seconds between fold steps, so a waiting ingest commit gets the lock
FOLD_BUDGET = 2.0  # seconds of folding per scheduled fold run
DELIVER_EVERY = 5.0
PRUNE_EVERY = 3600.0
CHECKPOINT_EVERY = 1.0  # seconds between passive WAL checkpoints


@dataclass
class Jobs:
    """The jobs of one server; `on_run` sees every detection run (the console sink),
    `heartbeat` gets a line per collect, ingest and detect step."""

    config: Config
    metrics: Metrics
    snapshots: SnapshotCache
    local: bool = False
    on_run: Callable[[RunResult], None] | None = None
    heartbeat: Heartbeat | None = None
    # Shared with the ingest writer: fold steps and ingest commits take turns at once
    # (SQLite's busy handler sleeps up to 100 ms and can starve a waiting writer).
    write_gate: threading.Lock = field(default_factory=threading.Lock)
    health: HealthRecord = field(default_factory=HealthRecord)  # shared with the server
    _collector: Collector | None = None
    _folded_to: int = 0
    _fold_step: int = 20_000
    _fold_lock: threading.Lock = field(default_factory=threading.Lock)
    _detector: ProcessPoolExecutor | None = None
    _detector_lock: threading.Lock = field(default_factory=threading.Lock)
    _triggers: dict[str, Any] = field(default_factory=dict)  # job name → its trigger
    _webhooks_failing: dict[str, bool] = field(default_factory=dict)  # name → failing now

    def store(self) -> Store:
        """A connection for one job; WAL checkpoints are the checkpoint job's."""
        return Store(self.config.store.path, autocheckpoint=False)

    # -- the jobs -------------------------------------------------------------------------

    def tail_once(self) -> int:
        """Read what was appended to `[ingest] files` since their checkpoints."""
        paths = sorted({p for pattern in self.config.ingest.files for p in glob.glob(pattern)})
        stored = 0
        if paths:
            with self.store() as store:
                report = Ingester(store, self.config).ingest(paths)
            self.metrics.ingested(
                ChunkCounts(report.observations, report.duplicates, report.rejected, 0, 0),
                "files",
            )
            for error in report.errors:
                log.warning("tail: %s", error)
            stored = report.observations
        if self.heartbeat is not None:
            self.heartbeat.ingest_step(len(paths), self.next_run("tail"))
        return stored

    def fold_once(self, budget: float | None = FOLD_BUDGET) -> int:
        """Fold new observations into presence in transactions of about FOLD_HOLD
        seconds each (the step adapts to how fast folding goes), pausing between them
        so ingest commits interleave; stop after `budget` seconds (None: until done).
        Keeps the next detection run short."""
        span = max(1, int(self.config.detect.bucket_span))
        folded = 0
        began = time.monotonic()
        with self._fold_lock, self.store() as store:
            low, top = store.conn.execute(
                "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM observations"
            ).fetchone()
            self._folded_to = max(self._folded_to, int(low) - 1)
            while self._folded_to < top:
                if budget is not None and time.monotonic() - began > budget:
                    break
                upto = min(int(top), self._folded_to + self._fold_step)
                started = time.perf_counter()
                with self.write_gate:
                    folded += refresh_presence(store, span, upto_id=upto)
                took = time.perf_counter() - started
                self._folded_to = upto
                scale = min(2.0, FOLD_HOLD / max(took, 1e-3))
                step = int(self._fold_step * scale)
                self._fold_step = min(FOLD_MAX_STEP, max(FOLD_MIN_STEP, step))
                time.sleep(FOLD_PAUSE)
        return folded

    def detect_once(self) -> RunResult | None:
        """The rule at data time now, in a child process (its Python work would otherwise
        hold the GIL the HTTP loop and the ingest writer need); then the snapshot cache
        for the new run."""
        started = time.perf_counter()
        try:
            self.fold_once(None)  # in short steps; the run's own fold then finds little left
            run = self._detect_in_child()
            # late data beyond one run's budget: more runs now, within half an interval
            while run.behind and time.perf_counter() - started < self.config.detect.interval / 2:
                if self.heartbeat is not None:
                    self.heartbeat.detected(run, None)
                run = self._detect_in_child()
            with self.store() as store:
                self._judge_catch_up(store)
                self._judge_ingest(store)
                if self.snapshots.requested:
                    self.fold_once(FOLD_BUDGET)
                    self.snapshots.refresh(store)
        except Exception:
            self.metrics.runs.labels("error").inc()
            raise
        finally:
            self.metrics.duration.observe(time.perf_counter() - started)
            self.metrics.last_run.set_to_current_time()
        self.metrics.runs.labels("learning" if run.learning else "ok").inc()
        if self.heartbeat is not None:
            self.heartbeat.detected(run, self.next_run("detect"))
        if self.on_run is not None:
            self.on_run(run)
        return run

    def _judge_ingest(self, store: Store) -> None:
        """Ingest is a failing part of Health and /healthz while the newest stored data
        is older than `[server] max_ingest_lag`: no host is reporting, or only old logs
        are arriving (which the schedule, at the wall clock, cannot score)."""
        limit = float(self.config.server.max_ingest_lag)
        newest = store.conn.execute("SELECT max(time) FROM observations").fetchone()[0]
        lag = time.time() - float(newest) if newest is not None else 0.0
        if not limit or newest is None or lag <= limit:
            self.health.succeeded("ingest")
            return
        self.health.problem(
            "ingest",
            f"the newest data is {format_age(lag)} old ({format_time(int(newest))}), over "
            f"[server] max_ingest_lag ({format_age(limit)}): is Fleet still sending? Old "
            "logs are scored with `rarenet backtest` or `rarenet detect --at`",
        )

    def _judge_catch_up(self, store: Store) -> None:
        """A catch-up that does not move (baseline/detect/silence.py) is a failing part
        of Health and /healthz until it moves again."""
        behind, _, stalled = catch_up(store.conn)  # only this: not the whole Health page
        if stalled:
            self.health.problem("catch-up", stalled_sentence(behind))
        else:
            self.health.succeeded("catch-up")

    def _detect_in_child(self) -> RunResult:
        with self._detector_lock:
            if self._detector is None:
                self._detector = ProcessPoolExecutor(
                    1,
                    mp_context=get_context("spawn"),
                    initializer=init_detector,
                    initargs=(os.getpid(),),
                )
            detector = self._detector
        try:
            return detector.submit(
                detect_in_process, self.config.store.path, self.config.detect
            ).result()
        except BrokenProcessPool:
            with self._detector_lock:  # the child died (OOM, kill): a fresh one next time
                if self._detector is detector:
                    self._detector = None
            detector.shutdown(wait=False)
            raise

    def close(self) -> None:
        """Stop the detection child (after the scheduler has stopped)."""
        with self._detector_lock:
            detector, self._detector = self._detector, None
        if detector is not None:
            detector.shutdown(wait=True, cancel_futures=True)

    def deliver_once(self, webhook: str | None = None) -> DeliveryReport:
        """Deliver due signals to the webhooks, or to the one named (baseline.deliver);
        then judge each one's health (`_judge_webhook`)."""
        with self.store() as store:
            report = deliver_once(store, self.config, only=webhook)
            for hook in configured_webhooks(self.config):
                if webhook is None or hook.name == webhook:
                    self._judge_webhook(store, hook.name, hook.alert_after)
        return report

    def _judge_webhook(self, store: Store, name: str, alert_after: float) -> None:
        """A line on the console when a webhook's deliveries start failing and when it
        delivers again; a failing part of Health and /healthz while a delivery has been
        failing longer than `alert_after`."""
        trouble = webhook_trouble(store, name)
        was = self._webhooks_failing.get(name, False)
        self._webhooks_failing[name] = trouble is not None
        part = f"webhook {name}"
        if trouble is None:
            self.health.succeeded(part)
            if was and self.heartbeat is not None:
                self.heartbeat.webhook(name, None)
            return
        if not was and self.heartbeat is not None:
            self.heartbeat.webhook(name, trouble.last_error)
        failing_for = time.time() - trouble.since
        if failing_for >= alert_after:
            self.health.problem(
                part,
                f"{trouble.retrying} delivery(ies) failing for {format_age(failing_for)}: "
                f"{trouble.last_error}",
            )

    def checkpoint_once(self) -> tuple[int, int]:
        """Copy committed WAL frames into the database file, off the request path (the
        ingest writer and the jobs never checkpoint on commit)."""
        with self.store() as store:
            return store.wal_checkpoint()

    def prune_once(self) -> object:
        with self.store() as store:
            return prune_once(store, self.config)

    def collect_once(self) -> int:
        """Read this host's sockets from /proc (`--local`)."""
        with self.store() as store:
            if self._collector is None:
                host = local_host_id(self.config.collect.host_id)
                self._collector = Collector(
                    store, build_parser(self.config).normaliser, host, host_uuid=local_host_uuid()
                )
            self._collector.store = store
            sockets, stored = self._collector.collect_once()
        self.metrics.rows.labels("accepted").inc(stored)
        if self.heartbeat is not None:
            upcoming = self.next_run("collect")
            self.heartbeat.collected(sockets, stored, self._collector.host, upcoming)
        return stored

    def next_run(self, name: str) -> datetime | None:
        """When the scheduled job `name` fires next (None: not scheduled). From its
        trigger, not the scheduler: `shutdown` holds the job-store lock while it waits
        for running jobs, so a job asking the scheduler would never finish."""
        trigger = self._triggers.get(name)
        if trigger is None:
            return None
        upcoming: datetime | None = trigger.get_next_fire_time(None, datetime.now(UTC))
        return upcoming

    # -- wiring ---------------------------------------------------------------------------

    def build_scheduler(self) -> BackgroundScheduler:
        """Every job, coalesced and one at a time, plus the start-up sequence (so a
        newcomer sees the learning progress at once)."""
        scheduler = BackgroundScheduler(timezone="UTC")
        jobs: dict[str, tuple[Callable[[], object], float]] = {
            "fold": (self._guard("fold", self.fold_once), FOLD_EVERY),
            "prune": (self._guard("prune", self.prune_once), PRUNE_EVERY),
            "checkpoint": (self._guard("checkpoint", self.checkpoint_once), CHECKPOINT_EVERY),
        }
        if self.config.detect.role == "node":  # a shard's detection node runs the rule
            jobs["detect"] = (self._guard("detect", self.detect_once), self.config.detect.interval)
        if self.config.ingest.files:
            jobs["tail"] = (self._guard("tail", self.tail_once), TAIL_EVERY)
        for webhook in configured_webhooks(self.config):  # each on its own: none waits
            deliver = functools.partial(self.deliver_once, webhook.name)
            jobs[f"deliver:{webhook.name}"] = (self._guard("deliver", deliver), DELIVER_EVERY)
        if self.local:
            jobs["collect"] = (
                self._guard("collect", self.collect_once),
                self.config.collect.interval,
            )
        add_jobs(scheduler, self.config, jobs)
        self._triggers = {job.id: job.trigger for job in scheduler.get_jobs()}
        # At start, in order: what this host and the files have now, folded, then one run —
        # so the first learning line already counts them.
        scheduler.add_job(self._guard("start", self.start_once), next_run_time=datetime.now(UTC))
        return scheduler

    def start_once(self) -> RunResult | None:
        """The start-up sequence: collect (`--local`), tail, fold, detect."""
        if self.local:
            self.collect_once()
        if self.config.ingest.files:
            self.tail_once()
        if self.config.detect.role == "shard":
            self.fold_once(None)
            return None
        return self.detect_once()  # folds first

    def _guard(self, name: str, job: Callable[[], object]) -> Callable[[], object]:
        """A failing job is logged and counted; the next run tries again. After every
        job, posted and streamed rows due on the heartbeat are printed."""

        def run() -> object:
            try:
                result = job()
            except Exception as exc:
                self.metrics.job_errors.labels(name).inc()
                if isinstance(exc, sqlite3.Error | StoreError):
                    failure = self.health.failed(f"job {name}", exc)
                    log.error("job %s failed: %s", name, failure.reason)
                else:
                    log.error("job %s failed: %s: %s", name, type(exc).__name__, exc)
                return None
            finally:
                if self.heartbeat is not None:
                    self.heartbeat.ingest_step()
            self.health.succeeded(f"job {name}")
            return result

        return run
