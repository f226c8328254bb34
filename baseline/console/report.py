"""`rarenet report`: one self-contained HTML file — the console's signal, binary and
quality views for sharing in a ticket. The stylesheet is inlined, plots are inline SVG,
links point inside the file, and its own CSP forbids every request."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from rarenet.baseline.config import Config
from rarenet.baseline.console import pages, views
from rarenet.baseline.console.render import STATIC, Anchors, render
from rarenet.baseline.deliver.outbox import get_signal
from rarenet.baseline.detect.backtest import label_matches
from rarenet.baseline.errors import InputError
from rarenet.baseline.simulate.labels import Label
from rarenet.baseline.store import Store
from rarenet.extension.sync import atomic_write

DETAILED_SIGNALS = 100  # signals drawn in full (explanation and plots)
DETAILED_BINARIES = 40  # binaries given a section
LISTED_GROUPS = 1000  # rows of the signals list


@dataclass(frozen=True)
class LabelOutcome:
    label: Label
    signals: tuple[str, ...]  # ids of the signals that caught it

    @property
    def caught(self) -> bool:
        return bool(self.signals)


@dataclass(frozen=True)
class Quality:
    """A labelled backtest: the metrics, each label caught or missed, the false signals."""

    metrics: dict[str, Any]
    labels: tuple[LabelOutcome, ...]
    false_signals: tuple[views.SignalRow, ...]
    source: str = ""


@dataclass(frozen=True)
class Report:
    title: str
    generated_at: float
    since: int | None
    page: views.SignalsPage
    details: tuple[pages.SignalView, ...]
    binaries: tuple[tuple[views.BinaryPage, Markup], ...]
    quality: Quality | None = None
    notes: tuple[str, ...] = field(default=())


def quality_of(
    store: Store, metrics: dict[str, Any], labels: list[Label], span: int, source: str
) -> Quality:
    """Match every stored signal against the labels (the backtest's own rule)."""
    rows = views.signals_of(store, "1", [], 1_000_000)
    documents = {row.id: get_signal(store, row.id).document for row in rows}
    outcomes = []
    true_ids: set[str] = set()
    for label in labels:
        hits = tuple(
            sid for sid, doc in documents.items() if doc and label_matches(label, doc, span)
        )
        true_ids.update(hits)
        outcomes.append(LabelOutcome(label, hits))
    false = tuple(row for row in rows if row.id not in true_ids)
    return Quality(metrics, tuple(outcomes), false, source)


def build_report(
    store: Store,
    config: Config,
    *,
    since: int | None = None,
    quality: Quality | None = None,
    title: str = "rarenet report",
) -> Report:
    """The report's content from `store`: signals bucketed at/after `since`."""
    span = max(1, int(config.detect.bucket_span))
    filters = views.SignalFilter(since=since)
    page = views.signals_page(store, filters, per_page=LISTED_GROUPS)
    where, params = filters.where()
    newest = views.signals_of(store, where, params, DETAILED_SIGNALS)
    details = tuple(pages.signal_view(store, config, row.id) for row in newest)
    keys: list[str] = []
    for view in details:
        if view.executable not in keys:
            keys.append(view.executable)
    binaries = []
    for key in keys[:DETAILED_BINARIES]:
        binary = views.binary_page(store, span, int(config.detect.history), key)
        binaries.append((binary, pages.binary_plot(binary)))
    notes = []
    if page.total_signals > len(newest):
        notes.append(f"{page.total_signals} signals: the newest {len(newest)} are shown in full")
    return Report(
        title=title,
        generated_at=time.time(),
        since=since,
        page=page,
        details=details,
        binaries=tuple(binaries),
        quality=quality,
        notes=tuple(notes),
    )


def render_report(report: Report) -> str:
    """The report as one HTML document."""
    css = Markup((STATIC / "console.css").read_text(encoding="utf-8"))
    return render("report.html", links=Anchors(), session=None, report=report, inline_css=css)


def write_report(report: Report, out: Path) -> int:
    """Write the report atomically; returns its size in bytes. The page goes to a new
    temporary file in the target's directory (random name, created exclusively, so a
    planted link is never followed), then replaces `out` — which must be a regular file
    or not exist yet (never a device, directory, link or pipe). Nothing is left behind
    on failure."""
    check_target(out)
    html = render_report(report).encode("utf-8")
    if not out.parent.is_dir():
        raise InputError(f"no directory {out.parent} to write into", where="--out")
    atomic_write(out, html)
    return len(html)


def check_target(out: Path) -> None:
    """InputError (exit 2) unless `out` names a file the report may be written to."""
    if not str(out).strip() or out.name in ("", ".", ".."):
        raise InputError("--out must name a file", where="--out", hint="e.g. --out report.html")
    _refuse_to_replace(out)


def _refuse_to_replace(out: Path) -> None:
    """InputError unless `out` does not exist or is a regular file (not followed)."""
    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = (
            "a directory" if stat.S_ISDIR(mode)
            else "a symbolic link" if stat.S_ISLNK(mode)
            else "a device, pipe or socket"
        )  # fmt: skip
        raise InputError(
            f"{out} is {kind}: the report replaces only a regular file",
            where="--out",
            hint="give a new file name, e.g. --out report.html",
        )
