"""Prometheus metrics: in-process counters plus gauges read from the store per scrape.

Each app has its own registry (never the global default), so tests can run several.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rarenet.baseline import __version__
from rarenet.baseline.detect.exceptions import broad_exceptions, excepted_last_day
from rarenet.baseline.detect.silence import Arrivals, arrivals
from rarenet.baseline.ingest.chunks import ChunkCounts
from rarenet.baseline.store import Store

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Every metric `GET /metrics` shows."""

    def __init__(self, open_store: Callable[[], Store], span: int = 900) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series
        self.registry = CollectorRegistry()
        r = self.registry
        self.rows = Counter(
            "rarenet_ingest_rows",
            "Rows ingested (HTTP and tailed files) by result: accepted (newly stored), "
            "duplicate (already stored), rejected (quarantined lines or items).",
            ["result"],
            registry=r,
        )
        for result in ("accepted", "duplicate", "rejected"):
            self.rows.labels(result)
        self.requests = Counter(
            "rarenet_ingest_requests",
            "POST /v1/ingest requests by status code.",
            ["code"],
            registry=r,
        )
        self.runs = Counter(
            "rarenet_detection_runs", "Detection runs by status (ok, learning, error).", ["status"],
            registry=r,
        )  # fmt: skip
        for status in ("ok", "learning", "error"):
            self.runs.labels(status)
        self.duration = Histogram(
            "rarenet_detection_duration_seconds",
            "Duration of detection runs.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.last_run = Gauge(
            "rarenet_detection_last_run_timestamp_seconds",
            "Wall-clock time the last detection run finished.",
            registry=r,
        )
        self.job_errors = Counter(
            "rarenet_job_errors", "Scheduled jobs that raised, by job.", ["job"], registry=r
        )
        Info("rarenet_build", "rarenet version.", registry=r).info({"version": __version__})
        r.register(_StoreGauges(open_store, span))
        self.on_ingest: Callable[[str, ChunkCounts], None] | None = None  # the heartbeat

    def ingested(self, counts: ChunkCounts, source: str = "HTTP") -> None:
        """Count one commit from `source` (HTTP, files, stream); tell `on_ingest`."""
        self.rows.labels("accepted").inc(counts.inserted)
        self.rows.labels("duplicate").inc(counts.duplicates)
        self.rows.labels("rejected").inc(counts.rejected)
        if self.on_ingest is not None:
            self.on_ingest(source, counts)


class _StoreGauges(Collector):
    """Lag, signals and delivery failures, read from the store at scrape time."""

    def __init__(self, open_store: Callable[[], Store], span: int) -> None:
        self.open_store, self.span = open_store, span

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected lazily (no store access at registration)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.open_store() as store:
            conn = store.conn
            newest = conn.execute("SELECT max(time) FROM observations").fetchone()[0]
            lag = GaugeMetricFamily(
                "rarenet_ingest_lag_seconds",
                "Now minus the data time of the newest stored observation.",
            )
            if newest is not None:
                lag.add_metric([], max(0.0, time.time() - float(newest)))
            yield lag
            signals = GaugeMetricFamily(
                "rarenet_signals",
                "Signals in the outbox by delivery state (none: no webhook row).",
                labels=["state"],
            )
            for state, count in conn.execute(
                "SELECT coalesce(d.state, 'none'), count(DISTINCT s.id) FROM signals AS s "
                "LEFT JOIN deliveries AS d ON d.signal_id = s.id GROUP BY 1"
            ):
                signals.add_metric([str(state)], float(count))
            yield signals
            failures = GaugeMetricFamily(
                "rarenet_delivery_failures",
                "Deliveries whose attempts failed: retrying, failed (permanent) or dead.",
                labels=["state"],
            )
            for state, count in conn.execute(
                "SELECT state, count(*) FROM deliveries "
                "WHERE state IN ('retrying', 'failed', 'dead') GROUP BY state"
            ):
                failures.add_metric([str(state)], float(count))
            yield failures
            share = excepted_last_day(store)
            excepted = GaugeMetricFamily(
                "rarenet_excepted_share",
                "Share of the last day's candidates (by data time) that exceptions removed.",
            )
            excepted.add_metric([], share.share)
            yield excepted
            broad = GaugeMetricFamily(
                "rarenet_exceptions_broad",
                "Unexpired exceptions stored with --broad (they pin no binary or destination).",
            )
            broad.add_metric([], float(len(broad_exceptions(store))))
            yield broad
            yield from _arrival_gauges(arrivals(conn, self.span))


def _arrival_gauges(health: Arrivals) -> Iterator[GaugeMetricFamily]:
    """Late data and silence (baseline/detect/silence.py), in data time."""
    lag = GaugeMetricFamily(
        "rarenet_arrival_lag_seconds",
        "How long after its bucket ended data was first scored, over the newest hour of "
        "runs (quantile 0.5 and 0.99; absent before the first run).",
        labels=["quantile"],
    )
    for quantile, value in (("0.5", health.lag_p50), ("0.99", health.lag_p99)):
        if value is not None:
            lag.add_metric([quantile], float(value))
    yield lag
    gauges = (
        ("rarenet_catch_up_behind", "Host-buckets of late data waiting after the last run.",
         health.behind),
        ("rarenet_catch_up_stalled", "1 when the oldest waiting bucket has not moved for "
         "several runs.", int(health.stalled)),
        ("rarenet_too_late_host_buckets", "Host-buckets that arrived older than history, "
         "never scored (all hosts).", health.too_late_total),
        ("rarenet_silent_hosts", "Hosts that reported in most buckets of the day before "
         "the newest hour and in none of that hour.", health.silent_count),
    )  # fmt: skip
    for name, text, value in gauges:
        family = GaugeMetricFamily(name, text)
        family.add_metric([], float(value))
        yield family
