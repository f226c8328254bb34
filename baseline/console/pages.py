"""Each page's content as one typed value, built from the store: the console renders
these per request, the report renders several into one file."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, replace
from typing import Any

from markupsafe import Markup

from rarenet.baseline.config import Config
from rarenet.baseline.console import plots, views
from rarenet.baseline.deliver.outbox import SignalRecord, get_signal
from rarenet.baseline.detect.presence import refresh_presence
from rarenet.baseline.detect.shards import configured_shards
from rarenet.baseline.detect.why import Finding, Why, why
from rarenet.baseline.store import Store
from rarenet.baseline.triage import Comment, comments_of

DAY = 86400
ALLOW_FOR = 30 * DAY  # the default expiry an "allow this" form offers


@dataclass(frozen=True)
class SignalView:
    """Everything the signal page shows."""

    record: SignalRecord
    document: dict[str, Any]
    answer: Why | None  # `rarenet explain` at the run that emitted the signal
    finding: Finding | None  # the answer's verdict for the signal's bucket
    group: tuple[views.SignalRow, ...]  # the other signals of its group
    counted: int  # later uses (or a rollout's hosts) counted on this signal
    presence: Markup
    timeline: Markup
    parts: Markup
    parts_table: tuple[tuple[str, float], ...]
    comments: tuple[Comment, ...] = ()
    users: tuple[str, ...] = ()  # console users a signal can be assigned to

    @property
    def executable(self) -> str:
        return self.record.path or self.record.name

    def field(self, *keys: str) -> Any:
        """A nested value of the signal document (None when absent)."""
        value: Any = self.document
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value


def signal_view(
    store: Store, config: Config, sid: str, *, gate: threading.Lock | None = None
) -> SignalView:
    """The signal `sid`: its document, the explanation at the run that raised it (the
    end of the window it scored: a catch-up step's one bucket), and its plots.
    `gate` is held only while new observations are folded into presence."""
    settings = config.detect
    span = max(1, int(settings.bucket_span))
    record = get_signal(store, sid)
    document = record.document
    run_row = store.conn.execute(
        "SELECT r.window_end FROM signals s JOIN runs r ON r.id = s.run_id WHERE s.id = ?",
        (record.id,),
    ).fetchone()
    at = int(run_row[0]) if run_row and run_row[0] else record.bucket + span
    executable = record.path or record.name
    with gate or contextlib.nullcontext():  # the only write: folding new observations into presence
        refresh_presence(store, span)
    sources = configured_shards(settings) if settings.shards else None
    answer = why(store, settings, record.host, executable, at, refresh=False, sources=sources)
    finding = next((f for f in answer.findings if f.bucket == record.bucket), None)
    group_id = document.get("group") or record.id
    group = tuple(
        row
        for row in views.signals_of(
            store, "(s.group_id = ? OR s.id = ?)", [group_id, group_id], 200
        )
        if row.id != record.id
    )
    explanation = document.get("explanation") or {}
    parts = explanation.get("parts") or {}
    parts_table = (
        ("fleet rarity", round(100 * float(parts.get("rarity", 0)), 1)),
        (
            "after habit and location",
            round(100 * float(parts.get("after_habit_and_location", 0)), 1),
        ),
        ("this host's novelty", round(100 * float(parts.get("host_novelty", 0)), 1)),
        ("score", record.score),
    )
    history = int(settings.history)
    series = views.presence_series(
        store, span, executable, record.bucket - history, record.bucket + span
    )
    timeline = views.host_timeline(
        store,
        span,
        record.host,
        record.bucket - views.TIMELINE_BEFORE,
        record.bucket + views.TIMELINE_AFTER,
        mark=(executable, record.bucket),
    )
    return SignalView(
        record=record,
        document=document,
        answer=answer,
        finding=finding,
        group=group,
        counted=views.counted_on(store, record.id),
        presence=plots.presence_svg(
            series, marker=record.bucket, label=f"hosts using {executable} per bucket"
        ),
        timeline=plots.timeline_svg(timeline),
        parts=plots.parts_svg(parts_table, settings.threshold),
        parts_table=parts_table,
        comments=tuple(comments_of(store, record.id)),
        users=tuple(str(r[0]) for r in store.conn.execute("SELECT name FROM users ORDER BY name")),
    )


@dataclass(frozen=True)
class AllowForm:
    """The "allow this" form's pre-filled values."""

    signal: str
    name: str
    path: str
    host: str
    user: str
    cidr: str
    port: str
    expires: str
    reason: str
    suggestions: dict[str, str]


def allow_form(record: SignalRecord) -> AllowForm:
    """This executable on this host, for ALLOW_FOR; the user, destination and port are
    offered (placeholders) but not filled, so the exception covers the binary's habit."""
    document = record.document
    user = (document.get("user") or {}).get("name") or ""
    destination = document.get("destination") or {}
    ip = str(destination.get("ip") or "")
    return AllowForm(
        signal=record.id,
        name="" if record.path else record.name,
        path=record.path,
        host=record.host,
        user="",
        cidr="",
        port="",
        expires="30d",
        reason="",
        suggestions={
            "user": str(user),
            "cidr": f"{ip}/{128 if ':' in ip else 32}" if ip else "",
            "port": str(destination.get("port") or ""),
        },
    )


def allow_form_again(record: SignalRecord, typed: dict[str, str]) -> AllowForm:
    """The form as the analyst sent it (each field cut to what the form takes), to show
    again with what was wrong."""
    offered = allow_form(record)

    def field(key: str) -> str:
        return str(typed.get(key, ""))[:500]

    return replace(
        offered,
        name=field("name"),
        path=field("path"),
        host=field("host"),
        user=field("user"),
        cidr=field("cidr"),
        port=field("port"),
        expires=field("expires"),
        reason=field("reason"),
    )


def binary_plot(page: views.BinaryPage) -> Markup:
    return plots.presence_svg(page.series, label=f"hosts using {page.key} per bucket")


def host_plot(page: views.HostPage) -> Markup:
    return plots.timeline_svg(page.timeline)
