"""What a backtest or the demo found, for a terminal.

One aligned line per signal, tagged `attack <technique>` or `unlabelled`; then the
totals (with proper plurals), recall and precision, every missed label by name and the
score histogram as a table. Every line fits the terminal width (100 when not a TTY);
colour only on a TTY and never with NO_COLOR.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import click

from rarenet.baseline.cli.inert_output import echo_styled, inert_line
from rarenet.baseline.detect.backtest import Backtest, attack_name
from rarenet.baseline.simulate import Label
from rarenet.baseline.units import format_age, format_time, parse_time

DEFAULT_WIDTH = 100
WHAT_MAX = 56  # widest "process → destination" column kept aligned
BAR = 24  # width of a histogram bar
UNLABELLED = "unlabelled"

Segment = tuple[str, dict[str, Any]]  # text and its click.style arguments


@dataclass(frozen=True)
class Look:
    """How output is drawn: the line width and whether to colour."""

    width: int
    colour: bool

    @classmethod
    def of(cls, stream: TextIO | None = None) -> Look:
        """The look for `stream` (stdout by default)."""
        stream = stream or sys.stdout
        tty = stream.isatty()
        width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns or DEFAULT_WIDTH
        return cls(max(width, 20), tty and not os.environ.get("NO_COLOR"))


def plural(count: float, word: str, many: str | None = None) -> str:
    """`1 signal`, `2 signals`, `1,234 runs`, `0.5 days`."""
    number = f"{count:,}" if isinstance(count, int) else f"{count:g}"
    return f"{number} {word if count == 1 else many or word + 's'}"


def fit(segments: Sequence[Segment], look: Look) -> str:
    """Join `segments`, cut to the line width with `…`, styled when colouring."""
    out: list[str] = []
    room = look.width
    for raw, style in segments:
        text = inert_line(raw)  # data from hosts cannot drive the terminal
        cut = len(text) > room
        if cut:
            text = text[: max(room - 1, 0)] + "…"
        out.append(click.style(text, **style) if look.colour and style and text else text)
        room -= len(text)
        if cut or room <= 0:
            break
    return "".join(out)


def tag_of(result: Backtest, signal: dict[str, Any]) -> str | None:
    """`attack <technique>`, `unlabelled`, or None when there are no labels at all."""
    if result.labels is None:
        return None
    name = attack_name(result.label_of(signal))
    return f"attack {name}" if name else UNLABELLED


def tag_segment(tag: str, width: int) -> Segment:
    """The tag padded to `width`, red for an attack, yellow when unlabelled."""
    attack = tag not in (UNLABELLED, f"[{UNLABELLED}]")
    style: dict[str, Any] = {"fg": "red", "bold": True} if attack else {"fg": "yellow"}
    return tag.ljust(width), style


def what(signal: dict[str, Any]) -> str:
    """`path as user → ip:port`; `name (path)` when the path does not end in the name."""
    process = signal["process"]
    name, path = process["name"], process["executable"]
    shown = path if path and path.rsplit("/", 1)[-1] == name else f"{name} ({path or '?'})"
    user = (signal.get("user") or {}).get("name")
    dest = signal.get("destination") or {}
    return (
        shown
        + (f" as {user}" if user else "")
        + (f" → {dest.get('ip')}:{dest.get('port')}" if dest.get("ip") else "")
    )


def bucket_time(signal: dict[str, Any]) -> str:
    """The signal's bucket start, `MM-DD HH:MM` (UTC)."""
    start = parse_time(signal["bucket"]["start"])
    return datetime.fromtimestamp(start, UTC).strftime("%m-%d %H:%M")


@dataclass(frozen=True)
class Columns:
    """Widths of the aligned columns of a signal table (tag 0: no tag column)."""

    tag: int = 0
    host: int = 12
    what: int = 0


def columns(signals: Sequence[dict[str, Any]], tags: Sequence[str | None]) -> Columns:
    """Widths that align every one of `signals`."""
    return Columns(
        tag=max((len(tag) for tag in tags if tag is not None), default=0),
        host=max((len(s["host"]["name"]) for s in signals), default=4),
        what=min(max((len(what(s)) for s in signals), default=0), WHAT_MAX),
    )


def signal_row(signal: dict[str, Any], tag: str | None, cols: Columns, look: Look) -> str:
    """One signal: score, tag, bucket, host, process → destination, why."""
    segments: list[Segment] = [(f"  {signal['score']:5.1f}", {"bold": True})]
    if tag is not None:
        segments += [("  ", {}), tag_segment(tag, cols.tag)]
    segments.append(
        (
            f"  {bucket_time(signal)}  {signal['host']['name'].ljust(cols.host)}  "
            f"{what(signal).ljust(cols.what)}  — {signal['reason']}",
            {},
        )
    )
    return fit(segments, look)


def signal_table(result: Backtest, look: Look) -> list[str]:
    """A header and one aligned line per signal (nothing when there are none)."""
    signals = result.signals
    if not signals:
        return []
    tags = [tag_of(result, doc) for doc in signals]
    cols = columns(signals, tags)
    label = f"  {'label'.ljust(cols.tag)}" if cols.tag else ""
    header = (
        f"  score{label}  {'bucket'.ljust(11)}  {'host'.ljust(cols.host)}  "
        f"{'process → destination'.ljust(cols.what)}  — why"
    )
    lines = [fit([(header, {"dim": True})], look)]
    lines += [signal_row(doc, tag, cols, look) for doc, tag in zip(signals, tags, strict=True)]
    return lines


def totals_lines(result: Backtest, look: Look) -> list[str]:
    """`totals  17 signals from 192 runs over 2 days of data, …` and the data time."""
    text = f"{plural(len(result.signals), 'signal')} from {plural(len(result.runs), 'run')}"
    when = ""
    if result.start is not None and result.stop is not None:
        text += f" over {plural(round((result.stop - result.start) / 86400, 1), 'day')} of data"
        when = f"{format_time(result.start)} to {format_time(result.stop)}"
    host_days = (result.metrics or {}).get("host_days")
    if host_days is not None:
        text += f", {plural(host_days, 'host-day')} scored after warm-up"
    lines = [fit([("totals     ", {}), (text, {"bold": True})], look)]
    return lines + ([fit([(f"data time  {when}", {})], look)] if when else [])


def quality_lines(result: Backtest, look: Look, noun: str) -> list[str]:
    """Recall (with every missed label by name) and precision; a note without labels."""
    if result.labels is None:
        return [
            fit(
                [
                    (
                        "no labels given: signals are not matched to attacks "
                        "(--labels FILE adds recall, precision and the missed attacks)",
                        {},
                    )
                ],
                look,
            )
        ]
    labels, missed, signals = result.labels, result.missed, result.signals
    metrics = result.metrics or {}
    caught = len(labels) - len(missed)
    recall = f"caught {caught}/{len(labels)} {noun if len(labels) == 1 else noun + 's'}"
    detail = []
    if metrics.get("detected_in_first_run") is not None and caught:
        detail.append(f"{metrics['detected_in_first_run']} in the first run that could see them")
    if metrics.get("max_latency_seconds") is not None:
        detail.append(f"longest wait {format_age(metrics['max_latency_seconds'])}")
    lines = [
        fit(
            [
                ("recall     ", {}),
                (recall, {"bold": True}),
                (f" ({'; '.join(detail)})" if detail else "", {}),
            ],
            look,
        )
    ]
    true = sum(result.label_of(doc) is not None for doc in signals)
    verb = "matches" if len(signals) == 1 else "match"
    precision = f"{true}/{plural(len(signals), 'signal')} {verb} a label"
    if signals:
        precision += f" ({100 * true / len(signals):.1f}%)"
    false = len(signals) - true
    precision += f"; {plural(false, 'false signal')}"
    if metrics.get("false_per_100_host_days") is not None:
        precision += f" = {metrics['false_per_100_host_days']:g} per 100 host-days"
    lines.append(fit([("precision  " + precision, {})], look))
    if not missed:
        lines.append(fit([("missed     none", {"fg": "green"})], look))
        return lines
    lines.append(
        fit([(f"missed     {plural(len(missed), noun)}:", {"fg": "red", "bold": True})], look)
    )
    return lines + missed_rows(missed, look)


def missed_rows(missed: Sequence[Label], look: Look) -> list[str]:
    """One aligned line per missed label: host, technique, path, time."""
    host = max(len(label.host) for label in missed)
    name = max(len(attack_name(label) or "") for label in missed)
    path = max(len(label.path or label.name) for label in missed)
    return [
        fit(
            [
                (f"  {label.host.ljust(host)}  ", {}),
                ((attack_name(label) or "").ljust(name), {"fg": "red"}),
                (
                    f"  {(label.path or label.name).ljust(path)}  "
                    f"{format_time(label.start)} to {format_time(label.end)}",
                    {},
                ),
            ],
            look,
        )
        for label in missed
    ]


def histogram_lines(result: Backtest, look: Look) -> list[str]:
    """Candidates per 10-point score band (warm buckets), counts aligned, bars log-scaled."""
    counts = [sum(run.histogram[band] for run in result.runs) for band in range(10)]
    if not any(counts):
        return ["score histogram: no candidate scored yet (every bucket still warming up)"]
    top = math.log10(max(counts) + 1)
    width = max(len(f"{n:,}") for n in counts)
    lines = [
        fit([("score histogram (candidates per score band, bars on a log scale):", {})], look),
        fit([(f"  {'band':>6}  {'n':>{width}}", {"dim": True})], look),
    ]
    for band, count in enumerate(counts):
        bar = "#" * round(BAR * math.log10(count + 1) / top)
        lines.append(
            fit(
                [
                    (f"  {f'{10 * band}-{10 * band + 10}':>6}  {count:>{width},}", {}),
                    (f"  {bar}" if bar else "", {"fg": "cyan"}),
                ],
                look,
            )
        )
    return lines


def summary_lines(result: Backtest, look: Look, *, noun: str = "labelled attack") -> list[str]:
    """The whole summary: signal table, totals, recall/precision/missed, histogram."""
    lines = signal_table(result, look)
    if lines:
        lines.append("")
    lines += totals_lines(result, look)
    lines += quality_lines(result, look, noun)
    lines += histogram_lines(result, look)
    return lines


def echo_summary(result: Backtest, *, noun: str = "labelled attack") -> None:
    """Print the summary on stdout."""
    for line in summary_lines(result, Look.of(), noun=noun):
        echo_styled(line)


__all__ = [
    "Look",
    "echo_summary",
    "fit",
    "plural",
    "signal_row",
    "summary_lines",
]
