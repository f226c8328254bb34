"""The rule: every `interval`, score the look-back window and queue signals.

`detect_once` is the scheduler's job and the `rarenet detect` command: refresh presence,
gather features, score, then decide per candidate — learning (warm-up), excepted,
below threshold, already signalled (same id), suppressed (same host+executable within
`suppress_for`, or the same executable already signalled elsewhere: a rollout pages
once), or a new signal. Signals and the run record commit in one transaction.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from baseline.config import DetectSettings
from baseline.detect.exceptions import Exception_, active_exceptions
from baseline.detect.explain import explain
from baseline.detect.features import Candidate, Gathered, gather, window_buckets
from baseline.detect.presence import refresh_presence
from baseline.detect.scoring import Scores, score
from baseline.detect.signal import RULE_ID, Detail, document, signal_id
from baseline.store import Store


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
    # candidates per 10-point score band [0,10) … [90,100] (warm buckets only)
    histogram: list[int] = field(default_factory=lambda: [0] * 10)

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
    started = time.perf_counter()
    at = int(time.time()) if at is None else int(at)
    span = max(1, int(settings.bucket_span))
    history = int(settings.history)
    if refresh:
        refresh_presence(store, span)
    buckets = window_buckets(at, span, int(settings.lookback))
    gathered = gather(store, span, history, buckets, settings.warmup_buckets)
    scores = score(gathered.features)
    result = RunResult(
        data_time=at,
        window_start=buckets[0],
        window_end=buckets[-1] + span,
        candidates=len(gathered.candidates),
        observations=_observations_in(store, buckets[0], buckets[-1] + span),
    )
    latest = gathered.fleet[buckets[-1]]
    if latest.buckets < settings.warmup_buckets:
        result.learning = f"learning: {latest.buckets}/{settings.warmup_buckets} buckets"
    warm = gathered.warm
    if warm.any():
        counts, _ = np.histogram(scores.score[warm], bins=10, range=(0, 100))
        result.histogram = [int(n) for n in counts]
    decisions = _Decisions()
    _decide(store, settings, gathered, scores, span, decisions, result)
    decisions.new.sort(key=lambda item: -float(item[2]["score"]))
    kept = decisions.new[: settings.max_signals]
    result.truncated = len(decisions.new) - len(kept)
    result.signals = len(kept)
    result.documents = [doc for _, _, doc in kept]
    result.duration = time.perf_counter() - started
    _commit(store, result, kept, decisions)
    return result


@dataclass
class _Decisions:
    """What a run will write: new signals, suppressed counts, exception hits."""

    new: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # (id, bucket, doc)
    bumps: Counter[str] = field(default_factory=Counter)
    exception_hits: Counter[int] = field(default_factory=Counter)


def _decide(
    store: Store,
    settings: DetectSettings,
    gathered: Gathered,
    scores: Scores,
    span: int,
    decisions: _Decisions,
    result: RunResult,
) -> None:
    """Walk candidates (earliest bucket first, highest score first) and decide each."""
    exceptions = active_exceptions(store, result.data_time)
    claimed: dict[str, str] = {}  # executable → the signal that speaks for it in this run
    cands = gathered.candidates
    over = np.flatnonzero(gathered.warm & (scores.score >= settings.threshold))
    order = sorted(over.tolist(), key=lambda i: (cands[i].bucket, -scores.score[i], i))
    for i in order:
        cand, value = cands[i], float(scores.score[i])
        detail = _detail(store, cand.first_id)
        hit = next((e for e in exceptions if _matches(e, cand, detail)), None)
        if hit is not None:
            decisions.exception_hits[hit.id] += 1
            result.excepted += 1
            continue
        sid = signal_id(cand.host, cand.name, cand.path, cand.bucket)
        if _exists(store, sid):
            continue  # an overlapping look-back already emitted it
        executable = cand.path or cand.name
        holder = claimed.get(executable) or _recent_signal(
            store, cand.host, executable, cand.bucket, int(settings.suppress_for)
        )
        if holder:
            decisions.bumps[holder] += 1
            result.suppressed += 1
            continue
        explanation, reason = explain(i, gathered, scores, settings.warmup_buckets)
        doc = document(
            sid=sid,
            host=cand.host,
            name=cand.name,
            path=cand.path,
            bucket=cand.bucket,
            span=span,
            score=value,
            detail=detail,
            explanation=explanation,
            reason=reason,
        )
        claimed[executable] = sid
        decisions.new.append((sid, cand.bucket, doc))


def _matches(entry: Exception_, cand: Candidate, detail: Detail | None) -> bool:
    return entry.matches(
        name=cand.name,
        path=cand.path,
        host=cand.host,
        user=detail.username if detail else "",
        address=detail.remote_address if detail else "",
        port=detail.remote_port if detail else 0,
    )


def _observations_in(store: Store, start: int, end: int) -> int:
    return int(
        store.conn.execute(
            "SELECT count(*) FROM observations WHERE time >= ? AND time < ?", (start, end)
        ).fetchone()[0]
    )


_DETAIL_DEFAULTS: tuple[Any, ...] = (
    0,
    "",
    -1,
    -1,
    "",
    "",
    "",
    -1,
    "",
    0,
    0,
    "",
    0,
    "",
    0,
    "outbound",
)


def _detail(store: Store, observation_id: int) -> Detail | None:
    row = store.conn.execute(
        "SELECT time, host_uuid, pid, uid, username, cmdline, cwd, parent_pid, parent_name, "
        "family, protocol, local_address, local_port, remote_address, remote_port, direction "
        "FROM observations WHERE id = ?",
        (observation_id,),
    ).fetchone()
    if row is None:
        return None  # pruned by retention: the signal still names host and binary
    values: list[Any] = [d if v is None else v for v, d in zip(row, _DETAIL_DEFAULTS, strict=True)]
    return Detail(*values)


def _exists(store: Store, sid: str) -> bool:
    return store.conn.execute("SELECT 1 FROM signals WHERE id = ?", (sid,)).fetchone() is not None


def _recent_signal(
    store: Store, host: str, executable: str, bucket: int, window: int
) -> str | None:
    """A signal for this executable within `window` before `bucket`: on this host first,
    else on any host (a rollout or a spreading binary pages once)."""
    row = store.conn.execute(
        "SELECT id FROM signals WHERE rule = ? AND (path = ? OR (path = '' AND name = ?)) "
        "AND bucket >= ? AND bucket <= ? ORDER BY host = ? DESC, bucket LIMIT 1",
        (RULE_ID, executable, executable, bucket - window, bucket, host),
    ).fetchone()
    return str(row[0]) if row else None


def _commit(
    store: Store,
    result: RunResult,
    kept: list[tuple[str, int, dict[str, Any]]],
    decisions: _Decisions,
) -> None:
    """The run record, its signals, suppressed counts and exception hits: one transaction."""
    now = time.time()
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO runs (rule, started_at, data_time, window_start, window_end, "
            "observations, candidates, signals, truncated, suppressed, excepted, duration, "
            "status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                "learning" if result.learning else "ok",
                result.learning or None,
            ),
        )
        result.id = int(cursor.lastrowid or 0)
        for sid, bucket, doc in kept:
            conn.execute(
                "INSERT INTO signals (id, rule, host, name, path, bucket, run_id, created_at, "
                "score, initial_score, document, suppressed_count) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
