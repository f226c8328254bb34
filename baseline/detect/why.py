"""Why a host's use of a binary did or did not fire at a data time (`rarenet explain`).

The rule's own evaluation (baseline/detect/evaluate.py) of the look-back window at T,
over the same sources (this store, or the detection node's shards), without writing a
signal: learning, below threshold (with the score's parts), excepted by which
exception, suppressed by which signal, one host of a rollout, signalled (or already)
and grouped with which hosts — each finding rendered as the rule renders its signals,
so a stored signal's reason is given word for word. The console shows the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.decide import Outcome, Verdict, executable, group_sentence
from rarenet.baseline.detect.destination import destination_kind
from rarenet.baseline.detect.evaluate import (
    Described,
    Evaluation,
    describe,
    describe_new,
    evaluate,
)
from rarenet.baseline.detect.exceptions import active_exceptions
from rarenet.baseline.detect.features import Gathered, window_buckets
from rarenet.baseline.detect.late import LATE_AFTER
from rarenet.baseline.detect.peers import PeerUse, host_peers
from rarenet.baseline.detect.signal import RULE_ID
from rarenet.baseline.detect.source import LocalSource, PresenceSource
from rarenet.baseline.store import Store
from rarenet.baseline.units import format_age, format_time


@dataclass(frozen=True)
class Finding:
    """One bucket of the window in which the host used the binary, and the verdict."""

    bucket: int
    name: str
    path: str
    outcome: Outcome
    score: float
    threshold: float
    sentence: str  # the verdict in words
    reason: str  # the score's one-line reason
    explanation: dict[str, Any]
    signal: str | None
    group: str | None
    others: list[dict[str, Any]]
    exception: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket": format_time(self.bucket),
            "name": self.name,
            "path": self.path or None,
            "outcome": self.outcome.value,
            "verdict": self.sentence,
            "score": self.score,
            "threshold": self.threshold,
            "reason": self.reason,
            "signal": self.signal,
            "group": {"id": self.group, "hosts": self.others} if self.group else None,
            "exception": self.exception,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Why:
    """The answer of `rarenet explain HOST EXECUTABLE --at T`."""

    host: str
    executable: str
    at: int
    window_start: int
    window_end: int
    learning: str | None
    findings: list[Finding] = field(default_factory=list)
    last_seen: int | None = None
    signals: list[dict[str, Any]] = field(default_factory=list)  # stored, for this host
    peers: list[PeerUse] = field(default_factory=list)  # the host's (baseline/detect/peers.py)

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "executable": self.executable,
            "at": format_time(self.at),
            "window": {
                "start": format_time(self.window_start),
                "end": format_time(self.window_end),
            },
            "learning": self.learning,
            "used_in_window": bool(self.findings),
            "last_seen": format_time(self.last_seen) if self.last_seen is not None else None,
            "findings": [finding.as_json() for finding in self.findings],
            "signals": self.signals,
            "peers": [
                {"host": p.host, "similarity": p.similarity, "half_days_using": p.occasions}
                for p in self.peers
            ],
        }


def why(
    store: Store,
    settings: DetectSettings,
    host: str,
    exe: str,
    at: int,
    *,
    refresh: bool = True,
    sources: Sequence[PresenceSource] | None = None,
) -> Why:
    """Explain `exe` (a path, or a name) on `host` for the run at data time `at`: the
    rule's own evaluation of that window (baseline/detect/evaluate.py) over `sources`
    (default: this store; a detection node passes its shards), each finding rendered as
    the rule renders its signals. With `refresh`, new observations are folded into
    presence first (a write); the console folds under the server's write gate itself
    and passes False."""
    span = max(1, int(settings.bucket_span))
    shards = list(sources) if sources is not None else [LocalSource(store)]
    if refresh:
        for source in shards:
            source.refresh(span)
    buckets = window_buckets(at, span, int(settings.lookback))
    exceptions = active_exceptions(store, at)

    def mine(gathered: Gathered) -> set[int]:
        return {
            i
            for i, cand in enumerate(gathered.candidates)
            if cand.host == host and exe in (cand.path, cand.name)
        }

    evaluation = evaluate(store, shards, settings, buckets, exceptions, pick=mine)
    gathered = evaluation.gathered
    latest = gathered.fleet[buckets[-1]]
    learning = None
    if latest.buckets < settings.warmup_buckets:
        learning = f"learning: {latest.buckets}/{settings.warmup_buckets} buckets"
    findings = [
        _finding(store, evaluation, i)
        for i in sorted(mine(gathered), key=lambda k: gathered.candidates[k].bucket)
    ]
    return Why(
        host=host,
        executable=exe,
        at=at,
        window_start=buckets[0],
        window_end=buckets[-1] + span,
        learning=learning,
        findings=findings,
        last_seen=_last_seen(shards, span, host, exe, buckets[-1] + span),
        signals=_stored(store, host, exe),
        peers=host_peers(
            shards,
            span,
            int(settings.history),
            host,
            exe if exe.startswith("/") else "",
            buckets[-1],
            float(latest.hosts),
        ),
    )


def _finding(store: Store, evaluation: Evaluation, i: int) -> Finding:
    """Candidate i's verdict, rendered as the rule renders a signal: for one that is or
    would be a signal, with its own score, rollout, return and group."""
    verdict = evaluation.decisions.verdicts[i]
    cand = evaluation.gathered.candidates[i]
    new = next((n for n in evaluation.decisions.new if n.index == i), None)
    if new is not None:
        said = describe_new(evaluation, new)
    elif verdict.outcome is Outcome.EXISTS:
        said = describe(
            evaluation,
            i,
            rollout=_kind(store, verdict.signal) == "rollout",
            returning=evaluation.gathered.suspect(i),
            group=verdict.group,
            others=verdict.others,
        )
    else:
        said = describe(
            evaluation,
            i,
            rollout=False,
            returning=verdict.returning or evaluation.gathered.suspect(i),
            group=None,
            others=(),
        )
        said = replace(said, score=verdict.score)
    return _as_finding(store, evaluation.settings, verdict, cand, said)


def _kind(store: Store, sid: str | None) -> str | None:
    row = store.conn.execute("SELECT kind FROM signals WHERE id = ?", (sid,)).fetchone()
    return None if row is None else str(row[0])


def _as_finding(
    store: Store, settings: DetectSettings, verdict: Verdict, cand: Any, said: Described
) -> Finding:
    others = [member.as_json() for member in verdict.others]
    exception = None
    if verdict.exception is not None:
        entry = verdict.exception
        exception = {"id": entry.id, "reason": entry.reason or None, "rule": entry.describe()}
    return Finding(
        bucket=cand.bucket,
        name=cand.name,
        path=cand.path,
        outcome=verdict.outcome,
        score=said.score,
        threshold=settings.threshold,
        sentence=_sentence(store, settings, verdict, executable(cand), exception, said),
        reason=said.reason,
        explanation=said.explanation,
        signal=verdict.signal,
        group=verdict.group,
        others=others,
        exception=exception,
    )


def _sentence(
    store: Store,
    settings: DetectSettings,
    verdict: Verdict,
    exe: str,
    exception: dict[str, Any] | None,
    said: Described,
) -> str:
    together = group_sentence(verdict.others)
    tail = f"; {together}" if together else ""
    outcome = verdict.outcome
    if outcome is Outcome.LEARNING:
        return f"learning: no signal before {settings.warmup_buckets} buckets of fleet history"
    if outcome is Outcome.BELOW:
        return f"below threshold: scored {verdict.score:g} < {settings.threshold:g}"
    if outcome is Outcome.EXCEPTED and exception is not None:
        why_ = f" ({exception['reason']})" if exception["reason"] else ""
        return f"excepted by exception #{exception['id']}: {exception['rule']}{why_}"
    if outcome is Outcome.SUPPRESSED:
        going_on = " (still in use since it)" if verdict.returning is not None else ""
        return (
            f"suppressed: counted on signal {verdict.signal} ({_when(store, verdict.signal)})"
            f"{going_on}"
        )
    if outcome is Outcome.ROLLOUT:
        roll = said.explanation["rollout"]
        what = "an app people install" if roll["app"] and not roll["upgrade"] else "a rollout"
        return (
            f"one host of {what} ({exe}): counted on the first host's signal "
            f"{verdict.signal} ({_when(store, verdict.signal)})"
        )
    if outcome is Outcome.TRUNCATED:
        return f"over max_signals ({settings.max_signals}) in this run: not stored{tail}"
    if outcome is Outcome.EXISTS:
        return f"signalled: {verdict.signal}{_seen(store, verdict.signal)}{tail}"
    return f"would be signalled now as {verdict.signal} (score {verdict.score:g}){tail}"


def _seen(store: Store, sid: str | None) -> str:
    """ ", seen 2026-01-07T13:15:00Z, 5.0h after its bucket ended" for a stored signal
    whose data arrived late (more than an hour after its bucket); empty otherwise."""
    row = store.conn.execute(
        "SELECT json_extract(document, '$.arrival.seen'), "
        "json_extract(document, '$.arrival.lag_seconds') FROM signals WHERE id = ?",
        (sid,),
    ).fetchone()
    if row is None or row[1] is None or int(row[1]) <= LATE_AFTER:
        return ""
    return f" (its data arrived late: seen {row[0]}, {format_age(int(row[1]))} after its bucket)"


def _when(store: Store, sid: str | None) -> str:
    row = store.conn.execute("SELECT host, bucket FROM signals WHERE id = ?", (sid,)).fetchone()
    if row is None:
        return "earlier in this run"
    return f"{row[0]}, bucket {format_time(int(row[1]))}"


def _last_seen(
    shards: Sequence[PresenceSource], span: int, host: str, exe: str, before: int
) -> int | None:
    """The newest bucket before `before` in which the host used the binary (its shard
    answers; the others have none)."""
    seen = [source.last_seen(span, host, exe, before) for source in shards]
    return max((int(b) for b in seen if b is not None), default=None)


def _stored(store: Store, host: str, exe: str) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT id, bucket, score, suppressed_count, coalesce(group_id, id), "
        "json_extract(document, '$.destination.ip'), json_extract(document, '$.destination.port'), "
        "json_extract(document, '$.user.name') FROM signals "
        "WHERE rule = ? AND host = ? AND (path = ? OR (path = '' AND name = ?)) "
        "ORDER BY bucket DESC LIMIT 20",
        (RULE_ID, host, exe, exe),
    ).fetchall()
    return [
        {
            "id": sid,
            "bucket": format_time(int(bucket)),
            "score": value,
            "suppressed_count": count,
            "group": group,
            "destination": (
                {"ip": ip, "port": port, "kind": destination_kind(ip)} if ip is not None else None
            ),
            "user": user,
        }
        for sid, bucket, value, count, group, ip, port, user in rows
    ]
