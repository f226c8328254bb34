"""The rule: every `interval`, score the look-back window and queue signals.

`detect_once` is the scheduler's job and the `rarenet detect` command: refresh presence,
gather features, score, then decide per candidate (baseline/detect/decide.py: learning,
below threshold, excepted, already signalled, suppressed per host and executable, one
host of a rollout, or a new signal in its group). Signals and the run record commit in
one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.decide import Decisions, NewSignal, Outcome
from rarenet.baseline.detect.evaluate import Evaluation, describe_new, evaluate
from rarenet.baseline.detect.exceptions import Exception_, active_exceptions
from rarenet.baseline.detect.features import window_buckets
from rarenet.baseline.detect.late import Arrival, Backlog, settle
from rarenet.baseline.detect.signal import RULE_ID, document
from rarenet.baseline.detect.source import LocalSource, PresenceSource
from rarenet.baseline.store import Store
from rarenet.baseline.units import format_time


@dataclass
class RunResult:
    """What one run did (the `runs` row) and the signals it queued."""

    id: int = 0
    data_time: int = 0
    window_start: int = 0
    window_end: int = 0
    observations: int = 0
    candidates: int = 0
    signals: int = 0
    truncated: int = 0
    suppressed: int = 0
    excepted: int = 0
    learning: str = ""
    duration: float = 0.0
    documents: list[dict[str, Any]] = field(default_factory=list)
    shards: int = 1  # shards scored (a single node is one)
    shards_down: list[str] = field(default_factory=list)  # "name: why", not scored
    # candidates per 10-point score band [0,10) … [90,100] (warm buckets only)
    histogram: list[int] = field(default_factory=lambda: [0] * 10)
    # late data (baseline/detect/late.py)
    catch_up: bool = False  # a catch-up step: one bucket's queued host-buckets
    late: int = 0  # host-buckets of late data this step scored
    behind: int = 0  # host-buckets still queued after this run
    behind_since: int | None = None  # the oldest bucket still queued
    too_late: int = 0  # queued host-buckets older than history, counted per host, never scored
    steps: list[RunResult] = field(default_factory=list)  # this run's catch-up steps
    # (lag in seconds after the bucket ended, host-buckets) of the data first scored here
    arrivals: list[tuple[int, int]] = field(default_factory=list)

    @property
    def all_signals(self) -> int:
        """New signals of this run and its catch-up steps."""
        return self.signals + sum(step.signals for step in self.steps)

    @property
    def caught_up(self) -> int:
        """Host-buckets of late data this run's steps scored."""
        return sum(step.late for step in self.steps)

    def late_summary(self) -> str:
        """ "caught up 120 late host-buckets (2 signals), 3,400 still behind since …"
        (empty when no late data was seen)."""
        parts = []
        if self.steps:
            signals = sum(step.signals for step in self.steps)
            parts.append(f"caught up {self.caught_up:,} late host-bucket(s) ({signals} signal(s))")
        if self.behind:
            since = "?" if self.behind_since is None else format_time(self.behind_since)
            parts.append(f"{self.behind:,} still behind since {since}")
        if self.too_late:
            parts.append(f"{self.too_late:,} host-bucket(s) older than history not scored")
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "run": {
                "id": self.id,
                "data_time": self.data_time,
                "window_start": self.window_start,
                "window_end": self.window_end,
                "observations": self.observations,
                "candidates": self.candidates,
                "signals": self.signals,
                "truncated": self.truncated,
                "suppressed": self.suppressed,
                "excepted": self.excepted,
                "learning": self.learning or None,
                "duration": round(self.duration, 3),
                "shards": self.shards,
                "shards_down": self.shards_down,
                "late": {
                    "steps": len(self.steps),
                    "host_buckets": self.caught_up,
                    "signals": sum(step.signals for step in self.steps),
                    "behind": self.behind,
                    "behind_since": (
                        None if self.behind_since is None else format_time(self.behind_since)
                    ),
                    "too_late": self.too_late,
                },
            },
            "signals": self.documents,
        }


def detect_once(
    store: Store, settings: DetectSettings, at: int | None = None, *, refresh: bool = True
) -> RunResult:
    """One run of the rule at data time `at` (default: now). `refresh` False: the caller
    has folded new observations into presence itself (`rarenet serve` does, in short
    steps that let ingest commits through); rows it has not folded yet wait for the next
    run, whose look-back covers them again."""
    return detect_over(store, [LocalSource(store)], settings, at, refresh=refresh)


def detect_over(
    store: Store,
    sources: list[PresenceSource],
    settings: DetectSettings,
    at: int | None = None,
    *,
    refresh: bool = True,
    since: int | None = None,
    down: list[str] | None = None,
) -> RunResult:
    """One run of the rule over the presence of `sources` (host shards, or the store
    itself), writing signals and the run record to `store`. `since` moves the window's
    start back (a shard's catch-up, baseline/detect/shards.py); `down` names shards left
    out of this run, which the run record says.

    Before its look-back, the run catches up on late data (baseline/detect/late.py):
    queued host-buckets older than the look-back, oldest bucket first, one committed
    step per bucket, at most `catch_up` host-buckets; the result counts the steps'
    signals with its own and says how many host-buckets still wait."""
    started = time.perf_counter()
    at = int(time.time()) if at is None else int(at)
    span = max(1, int(settings.bucket_span))
    history = int(settings.history)
    if refresh:
        for source in sources:
            source.refresh(span)
    marks = [source.fold_mark(span) for source in sources]
    buckets = window_buckets(at, span, int(settings.lookback))
    if since is not None and since < buckets[0]:
        buckets = list(range(since // span * span, buckets[-1] + span, span))
    exceptions = active_exceptions(store, at)
    too_late = sum(source.drop_too_old(span, at - history, at) for source in sources)
    queue = Backlog.merged(
        [
            source.backlog(span, at - history, buckets[0], mark)
            for source, mark in zip(sources, marks, strict=True)
        ]
    )
    steps, left = queue.plan(int(settings.catch_up))
    caught_up = [
        _scored(store, sources, settings, [bucket], at, marks, exceptions, queued=True)
        for bucket in steps
    ]
    result = _scored(
        store,
        sources,
        settings,
        buckets,
        at,
        marks,
        exceptions,
        down=down,
        behind=(left.host_buckets, left.oldest, too_late),
    )
    result.steps = caught_up
    result.documents = [doc for step in caught_up for doc in step.documents] + result.documents
    result.duration = time.perf_counter() - started
    return result


def _scored(
    store: Store,
    sources: list[PresenceSource],
    settings: DetectSettings,
    buckets: list[int],
    at: int,
    marks: list[int],
    exceptions: list[Exception_],
    *,
    queued: bool = False,
    down: list[str] | None = None,
    behind: tuple[int, int | None, int] = (0, None, 0),
) -> RunResult:
    """Score `buckets` (a catch-up step: one bucket, its queued hosts only), decide,
    and commit the signals, the run record and the scored part of the queue together."""
    started = time.perf_counter()
    span = max(1, int(settings.bucket_span))
    evaluation = evaluate(
        store, sources, settings, buckets, exceptions, queued=marks if queued else None
    )
    gathered, scores, decisions = evaluation.gathered, evaluation.scores, evaluation.decisions
    low, high = buckets[0], buckets[-1] + span
    queued_now = Backlog.merged(  # the host-buckets this run scores first (and settles)
        [source.backlog(span, low, high, mark) for source, mark in zip(sources, marks, strict=True)]
    )
    result = RunResult(
        data_time=at,
        window_start=buckets[0],
        window_end=buckets[-1] + span,
        candidates=len(gathered.candidates),
        observations=gathered.observations_in(buckets[0], buckets[-1] + span),
        shards=len(sources),
        shards_down=list(down or ()),
        catch_up=queued,
        late=queued_now.host_buckets if queued else 0,
        behind=behind[0],
        behind_since=behind[1],
        too_late=behind[2],
    )
    latest = gathered.fleet[buckets[-1]]
    if latest.buckets < settings.warmup_buckets:
        result.learning = f"learning: {latest.buckets}/{settings.warmup_buckets} buckets"
    warm = gathered.warm
    if warm.any():
        counts, _ = np.histogram(scores.score[warm], bins=10, range=(0, 100))
        result.histogram = [int(n) for n in counts]
    kept = [(new.sid, new.bucket, _document(evaluation, new, at)) for new in decisions.new]
    result.truncated = sum(v.outcome is Outcome.TRUNCATED for v in decisions.verdicts.values())
    result.suppressed = sum(
        v.outcome in (Outcome.SUPPRESSED, Outcome.ROLLOUT) for v in decisions.verdicts.values()
    )
    result.excepted = sum(v.outcome is Outcome.EXCEPTED for v in decisions.verdicts.values())
    result.signals = len(kept)
    result.documents = [doc for _, _, doc in kept]
    result.duration = time.perf_counter() - started
    local = [i for i, source in enumerate(sources) if _is_store(source, store)]
    result.arrivals = [(max(0, at - (b + span)), count) for b, count in queued_now.buckets]
    _commit(
        store, result, kept, decisions, settle_queue=[(span, low, high, marks[i]) for i in local]
    )
    for i, source in enumerate(sources):
        if i not in local:
            source.settle(span, low, high, marks[i])
    return result


def _is_store(source: PresenceSource, store: Store) -> bool:
    """Whether `source` reads `store` itself (its queue settles in the run's commit)."""
    return isinstance(source, LocalSource) and source.store is store


def _document(evaluation: Evaluation, new: NewSignal, at: int) -> dict[str, Any]:
    """The signal document of a new signal, rendered from the run's evaluation, with
    when its data could first be seen (the run's data time `at`)."""
    cand = evaluation.gathered.candidates[new.index]
    said = describe_new(evaluation, new)
    doc = document(
        sid=new.sid,
        host=cand.host,
        name=cand.name,
        path=cand.path,
        bucket=cand.bucket,
        span=evaluation.span,
        score=new.score,
        detail=new.detail,
        explanation=said.explanation,
        reason=said.reason,
    )
    doc["group"] = new.group
    doc["kind"] = "rollout" if new.rollout else "host"
    doc["arrival"] = Arrival.of(cand.bucket, evaluation.span, at).as_json()
    return doc


def _commit(
    store: Store,
    result: RunResult,
    kept: list[tuple[str, int, dict[str, Any]]],
    decisions: Decisions,
    settle_queue: list[tuple[int, int, int, int]],
) -> None:
    """The run record, its signals, suppressed counts, exception hits and the scored
    part of this store's late-data queue (span, low, high, mark): one transaction."""
    now = time.time()
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO runs (rule, started_at, data_time, window_start, window_end, "
            "observations, candidates, signals, truncated, suppressed, excepted, duration, "
            "status, error, catch_up, late, behind, behind_since, arrivals) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                RULE_ID,
                now,
                result.data_time,
                result.window_start,
                result.window_end,
                result.observations,
                result.candidates,
                result.signals,
                result.truncated,
                result.suppressed,
                result.excepted,
                result.duration,
                _status(result),
                _problems(result),
                int(result.catch_up),
                result.late,
                result.behind,
                result.behind_since,
                orjson.dumps(result.arrivals).decode(),
            ),
        )
        result.id = int(cursor.lastrowid or 0)
        for sid, bucket, doc in kept:
            conn.execute(
                "INSERT INTO signals (id, rule, host, name, path, bucket, run_id, created_at, "
                "score, initial_score, document, suppressed_count, group_id, kind, suspect) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sid,
                    RULE_ID,
                    doc["host"]["name"],
                    doc["process"]["name"],
                    doc["process"]["executable"] or "",
                    bucket,
                    result.id,
                    now,
                    doc["score"],
                    doc["initial_score"],
                    orjson.dumps(doc).decode(),
                    decisions.bumps.pop(sid, 0),
                    doc["group"],
                    doc["kind"],
                    int(doc["explanation"]["keeps_suspect"]),
                ),
            )
        for sid, count in decisions.bumps.items():
            conn.execute(
                "UPDATE signals SET suppressed_count = suppressed_count + ? WHERE id = ?",
                (count, sid),
            )
        for exception_id, count in decisions.exception_hits.items():
            conn.execute(
                "UPDATE exceptions SET matched = matched + ? WHERE id = ?", (count, exception_id)
            )
        for span, low, high, mark in settle_queue:
            settle(conn, span, low, high, mark)


def _status(result: RunResult) -> str:
    if result.shards_down:
        return "partial"
    return "learning" if result.learning else "ok"


def _problems(result: RunResult) -> str | None:
    """The run's `error` column: learning, and shards whose hosts were not scored."""
    parts = [result.learning] if result.learning else []
    if result.shards_down:
        down = "; ".join(result.shards_down)
        parts.append(f"shards down, their hosts not scored in this run: {down}")
    return " | ".join(parts) or None
