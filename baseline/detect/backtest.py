"""Backtest: replay result logs through ingest and the scheduled rule.

The logs are ingested into a scratch store; then, run by run, the observations that
arrived in each interval are copied into a fresh store and the rule runs at that time —
exactly what a live service would have seen. Without a delivery plan every line arrives
at its data time; with one (`--arrivals`, baseline/simulate/delivery.py) late lines
arrive late, and the live service's catch-up scores them (docs/scoring.md "Late
data"). Nothing is delivered.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarenet.baseline.config import Config
from rarenet.baseline.detect.rule import RunResult, detect_once
from rarenet.baseline.errors import InputError
from rarenet.baseline.ingest.model import OBSERVATION_COLUMNS
from rarenet.baseline.ingest.pipeline import Ingester, IngestReport
from rarenet.baseline.simulate import Label, read_labels
from rarenet.baseline.simulate.delivery import Delay, read_delivery
from rarenet.baseline.store import Store
from rarenet.baseline.units import parse_time

DAY = 86400


@dataclass
class Backtest:
    """Every run, every signal, and (with labels) the metrics and the missed labels."""

    ingest: IngestReport
    runs: list[RunResult] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    labels: list[Label] | None = None  # None: no labels given
    span: int = 1  # bucket span (seconds) signals are matched to labels with
    start: int | None = None  # data time scored: [start, stop)
    stop: int | None = None

    @property
    def signals(self) -> list[dict[str, Any]]:
        return [doc for run in self.runs for doc in run.documents]

    def label_of(self, signal: dict[str, Any]) -> Label | None:
        """The first label this signal matches, if any."""
        return matching_label(self.labels or [], signal, self.span)

    @property
    def missed(self) -> list[Label]:
        """Labels no signal matched (empty without labels)."""
        signals = self.signals
        return [
            label
            for label in self.labels or []
            if not any(label_matches(label, doc, self.span) for doc in signals)
        ]

    def as_json(self) -> dict[str, Any]:
        """`backtest --json`: each signal also carries `label` (its attack, or null);
        `missed` lists the labels no signal matched (null without labels)."""
        return {
            "runs": len(self.runs),
            "signals": [{**doc, "label": attack_name(self.label_of(doc))} for doc in self.signals],
            "metrics": self.metrics,
            "missed": None if self.labels is None else [lb.to_json() for lb in self.missed],
            "ingest": self.ingest.as_json(),
        }


def backtest(
    files: Iterable[str],
    config: Config,
    *,
    start: int | None = None,
    end: int | None = None,
    labels_path: str | None = None,
    workdir: str | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    replay_path: Path | None = None,
    on_ingest: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    arrivals_path: str | None = None,
) -> Backtest:
    """Replay `files` in data time — or, with `arrivals_path` (a delivery plan,
    baseline/simulate/delivery.py), in arrival order, as the live service would see
    them; score every run; compare with labels if given.
    `replay_path` keeps the replayed store there (for `rarenet report`); by default it is
    a scratch file removed at the end. Progress: `on_ingest(bytes)` while the logs are
    read, `on_start(runs)` once before the first run, `on_run(run)` after each."""
    labels = read_labels(Path(labels_path)) if labels_path else None
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rarenet-backtest-") as scratch:
        source_path = Path(scratch) / "source.db"
        with Store(source_path) as source:
            report = Ingester(source, config, progress=on_ingest).ingest(files)
            if report.errors:
                raise InputError("; ".join(report.errors))
            delays = read_delivery(arrivals_path) if arrivals_path else []
            arrive(source, delays)
            first, last = source.conn.execute(
                "SELECT min(time), max(arrival) FROM observations"
            ).fetchone()
        settings = config.detect
        result = Backtest(report, labels=labels, span=max(1, int(settings.bucket_span)))
        if first is None:
            return result
        interval = max(1, int(settings.interval))
        start = first if start is None else max(start, first)
        stop = last + 1 if end is None else min(end, last + 1)
        result.start, result.stop = start, stop
        with Store(replay_path or Path(scratch) / "replay.db") as replay:
            copied_until = first
            at = (start // interval + 1) * interval
            if on_start:
                on_start(max(0, (stop + interval - at) // interval + 1))
            while at <= stop + interval:
                _copy_observations(replay, source_path, copied_until, at)
                copied_until = at
                run = detect_once(replay, settings, at)
                result.runs.append(run)
                if on_run:
                    on_run(run)
                at += interval
            if labels is not None:
                span = max(1, int(settings.bucket_span))
                warm = start + settings.warmup_buckets * span
                result.metrics = evaluate(result, labels, replay, span, warm, stop, delays)
    return result


def arrive(source: Store, delays: Sequence[Delay]) -> None:
    """Give every observation of the scratch copy its arrival: its data time, or the
    latest `arrives` of the delays holding its host and time."""
    with source.transaction() as conn:
        conn.execute("ALTER TABLE observations ADD COLUMN arrival INTEGER")
        conn.execute("UPDATE observations SET arrival = time")
        for delay in delays:
            conn.execute(
                "UPDATE observations SET arrival = max(arrival, ?) WHERE time >= ? AND time < ? "
                "AND (? IS NULL OR host = ?)",
                (delay.arrives, delay.start, delay.end, delay.host, delay.host),
            )
        conn.execute("CREATE INDEX observations_arrival ON observations (arrival, time)")


def _copy_observations(replay: Store, source: Path, start: int, end: int) -> None:
    """The observations that arrived in [start, end), in arrival and data-time order."""
    columns = ", ".join(OBSERVATION_COLUMNS)
    replay.conn.execute("ATTACH DATABASE ? AS source", (str(source),))
    try:
        with replay.transaction() as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO observations ({columns}) SELECT {columns} "
                "FROM source.observations WHERE arrival >= ? AND arrival < ? "
                "ORDER BY arrival, time, digest",
                (start, end),
            )
    finally:
        replay.conn.execute("DETACH DATABASE source")


def ready(delays: Sequence[Delay], host: str, bucket: int, span: int) -> int:
    """When all of a host-bucket's data has arrived: its end, or the latest arrival of
    the delays overlapping it, rounded up to the bucket grid (runs are on it)."""
    late = max(
        (
            d.arrives
            for d in delays
            if (d.host is None or d.host == host) and d.start < bucket + span and d.end > bucket
        ),
        default=0,
    )
    return max(bucket + span, -(-late // span) * span)


def label_matches(label: Label, signal: dict[str, Any], span: int) -> bool:
    """Same host, same path (or name), and the signal's bucket overlaps [from, to]."""
    if signal["host"]["name"] != label.host:
        return False
    if label.path:
        if signal["process"]["executable"] != label.path:
            return False
    elif signal["process"]["name"] != label.name:
        return False
    bucket = parse_time(signal["bucket"]["start"])
    return bucket <= label.end and bucket + span > label.start


def matching_label(labels: Iterable[Label], signal: dict[str, Any], span: int) -> Label | None:
    """The first of `labels` that `signal` matches, if any."""
    return next((label for label in labels if label_matches(label, signal, span)), None)


def attack_name(label: Label | None) -> str | None:
    """How a label is named in output: its technique, else its path or name."""
    if label is None:
        return None
    return label.technique or label.path or label.name


def evaluate(
    result: Backtest,
    labels: list[Label],
    replay: Store,
    span: int,
    scored_from: int,
    stop: int,
    delays: Sequence[Delay] = (),
) -> dict[str, Any]:
    """Recall, precision, false signals per 100 host-days (after warm-up), and how many
    labels the first run that could see them (after their data arrived) caught."""
    signals = result.signals
    matched: set[int] = set()
    true_signals = 0
    for signal in signals:
        hits = {i for i, label in enumerate(labels) if label_matches(label, signal, span)}
        true_signals += bool(hits)
        matched |= hits
    # "First run": the signal came from the run right after its bucket closed, i.e. no
    # earlier run could have had the data. Latency: label start → that run's data time.
    first_run = 0
    latencies: list[int] = []
    for label in labels:
        hit = next(
            (
                (run, doc)
                for run in result.runs
                for doc in run.documents
                if label_matches(label, doc, span)
            ),
            None,
        )
        if hit is None:
            continue
        run, doc = hit
        bucket = parse_time(doc["bucket"]["start"])
        first_run += run.data_time <= ready(delays, label.host, bucket, span)
        latencies.append(run.data_time - label.start)
    false_signals = len(signals) - true_signals
    histogram = [sum(run.histogram[band] for run in result.runs) for band in range(10)]
    host_days = replay.conn.execute(
        "SELECT count(*) FROM (SELECT DISTINCT host, time / 86400 FROM observations "
        "WHERE time >= ? AND time < ?)",
        (scored_from, stop),
    ).fetchone()[0]
    return {
        "labelled": len(labels),
        "detected": len(matched),
        "detected_in_first_run": first_run,
        "max_latency_seconds": max(latencies) if latencies else None,
        "recall": round(len(matched) / len(labels), 4) if labels else None,
        "precision": round(true_signals / len(signals), 4) if signals else None,
        "signals": len(signals),
        "false_signals": false_signals,
        "host_days": host_days,
        "false_per_100_host_days": round(100 * false_signals / host_days, 3) if host_days else None,
        "score_histogram": {f"{10 * band}-{10 * band + 10}": n for band, n in enumerate(histogram)},
    }
