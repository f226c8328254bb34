"""Plots as inline SVG, drawn on the server: no script, no request, the same markup in
the console and in the self-contained report. Colours come from CSS classes."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from rarenet.baseline.console.inert import inert
from rarenet.baseline.console.views import Series, Timeline
from rarenet.baseline.units import format_time

WIDTH = 760
PLOT_LEFT = 44  # room for the y axis labels
LABEL_WIDTH = 230  # a timeline's binary names


def _text(value: object) -> Markup:
    return escape(inert(value))


def _day(unix: int) -> str:
    return format_time(unix)[:16].replace("T", " ")


def _runs(buckets: Sequence[int], span: int) -> list[tuple[int, int]]:
    """Consecutive buckets merged into (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for bucket in buckets:
        if runs and bucket == runs[-1][1] + span:
            runs[-1] = (runs[-1][0], bucket)
        else:
            runs.append((bucket, bucket))
    return runs


def presence_svg(series: Series, *, marker: int | None = None, label: str = "") -> Markup:
    """Hosts using a binary per bucket (bars) over the window, a strip where the fleet
    reported at all (so "nobody" and "no data" differ), and the signal's bucket marked."""
    height, top, base = 170, 12, 140
    span_all = max(1, series.end - series.start)
    plot = WIDTH - PLOT_LEFT - 8
    peak = max((hosts for _, hosts in series.points), default=0)
    scale = (base - top) / max(1, peak)

    def x(unix: int) -> float:
        return PLOT_LEFT + (unix - series.start) / span_all * plot

    width = max(1.0, series.span / span_all * plot)
    bars = "".join(
        f"M{x(b):.1f} {base}V{base - hosts * scale:.1f}h{width:.1f}V{base}z"
        for b, hosts in series.points
    )
    strip = "".join(
        f'<rect class="reported" x="{x(a):.1f}" y="{base + 3}" width="{x(b) - x(a) + width:.1f}" height="4"/>'
        for a, b in _runs([b for b, _ in series.fleet], series.span)
    )
    parts = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{_text(label or "hosts per bucket")}">',
        f"<title>{_text(label or 'hosts per bucket')}</title>",
        f'<line class="axis" x1="{PLOT_LEFT}" y1="{base}" x2="{WIDTH - 8}" y2="{base}"/>',
        f'<text class="tick" x="{PLOT_LEFT - 4}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{PLOT_LEFT - 4}" y="{base}" text-anchor="end">0</text>',
        f'<path class="bars" d="{bars}"/>' if bars else "",
        strip,
        f'<text class="tick" x="{PLOT_LEFT}" y="{height - 6}">{_day(series.start)}</text>',
        f'<text class="tick" x="{WIDTH - 8}" y="{height - 6}" text-anchor="end">{_day(series.end)}</text>',
    ]
    if not series.points:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2:.0f}" y="{base / 2:.0f}" text-anchor="middle">'
            "never seen in this window</text>"
        )
    if marker is not None and series.start <= marker < series.end:
        parts.append(
            f'<line class="marker" x1="{x(marker):.1f}" y1="{top - 6}" x2="{x(marker):.1f}" y2="{base}"/>'
            f'<text class="marker-label" x="{x(marker) - 4:.1f}" y="{top + 2}" text-anchor="end">signal</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def timeline_svg(timeline: Timeline) -> Markup:
    """One row per binary the host used with the network, a mark per bucket it did."""
    row_height = 16
    height = 28 + row_height * max(1, len(timeline.rows))
    span_all = max(1, timeline.end - timeline.start)
    plot = WIDTH - LABEL_WIDTH - 8

    def x(unix: int) -> float:
        return LABEL_WIDTH + (unix - timeline.start) / span_all * plot

    width = max(1.5, timeline.span / span_all * plot - 0.5)
    parts = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {height}" role="img" '
        'aria-label="binaries this host used with the network, per bucket">',
        "<title>binaries this host used with the network, per bucket</title>",
    ]
    for index, row in enumerate(timeline.rows):
        y = 4 + index * row_height
        label = row.path or row.name
        if len(label) > 36:
            label = "…" + label[-35:]
        css = "row hot" if row.highlighted else "row"
        cells = "".join(
            f"M{x(a):.1f} {y + 2}h{x(b) - x(a) + width:.1f}v{row_height - 5}h-{x(b) - x(a) + width:.1f}z"
            for a, b in _runs(row.buckets, timeline.span)
        )
        parts.append(
            f'<g class="{css}"><text class="rowlabel" x="{LABEL_WIDTH - 6}" y="{y + 12}" '
            f'text-anchor="end">{_text(label)}</text><path d="{cells}"/></g>'
        )
    if not timeline.rows:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2:.0f}" y="16" text-anchor="middle">'
            "no network use in this window</text>"
        )
    axis = height - 6
    parts.append(
        f'<text class="tick" x="{LABEL_WIDTH}" y="{axis}">{_day(timeline.start)}</text>'
        f'<text class="tick" x="{WIDTH - 8}" y="{axis}" text-anchor="end">{_day(timeline.end)}</text>'
    )
    if timeline.marker is not None and timeline.start <= timeline.marker < timeline.end:
        mx = x(timeline.marker)
        parts.append(
            f'<line class="marker" x1="{mx:.1f}" y1="0" x2="{mx:.1f}" y2="{height - 18}"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def parts_svg(parts: Sequence[tuple[str, float]], threshold: float) -> Markup:
    """The score's parts as horizontal bars on 0–100, the threshold as a line."""
    row_height, label = 22, 230
    height = 12 + row_height * len(parts)
    plot = WIDTH - label - 60

    def x(value: float) -> float:
        return label + max(0.0, min(100.0, value)) / 100 * plot

    out = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {height}" role="img" '
        'aria-label="the score and its parts, 0 to 100">',
        "<title>the score and its parts, 0 to 100</title>",
    ]
    for index, (name, value) in enumerate(parts):
        y = 4 + index * row_height
        out.append(
            f'<text class="rowlabel" x="{label - 6}" y="{y + 13}" text-anchor="end">{_text(name)}</text>'
            f'<rect class="part" x="{label}" y="{y + 2}" width="{x(value) - label:.1f}" height="14"/>'
            f'<text class="tick" x="{x(value) + 4:.1f}" y="{y + 13}">{value:g}</text>'
        )
    tx = x(threshold)
    out.append(
        f'<line class="threshold" x1="{tx:.1f}" y1="0" x2="{tx:.1f}" y2="{height}"/>'
        f"<title>threshold {threshold:g}</title></svg>"
    )
    return Markup("".join(out))


def hourly_svg(hourly: Sequence[tuple[int, int]]) -> Markup:
    """Observations per hour of data time (the newest day), as bars."""
    height, base = 90, 70
    if not hourly:
        return Markup(
            f'<svg class="plot" viewBox="0 0 {WIDTH} 30" role="img" aria-label="no data yet">'
            '<text class="empty" x="10" y="20">no data yet</text></svg>'
        )
    peak = max(n for _, n in hourly)
    first = hourly[0][0]
    slot = (WIDTH - PLOT_LEFT - 8) / 24
    bars = "".join(
        f"M{PLOT_LEFT + (hour - first) / 3600 * slot:.1f} {base}V{base - n / peak * (base - 8):.1f}"
        f"h{slot - 2:.1f}V{base}z"
        for hour, n in hourly
        if hour - first < 24 * 3600
    )
    return Markup(
        f'<svg class="plot" viewBox="0 0 {WIDTH} {height}" role="img" '
        'aria-label="observations per hour of data time">'
        "<title>observations per hour of data time</title>"
        f'<path class="bars" d="{bars}"/>'
        f'<text class="tick" x="{PLOT_LEFT - 4}" y="14" text-anchor="end">{peak:,}</text>'
        f'<text class="tick" x="{PLOT_LEFT}" y="{height - 4}">{_day(first)}</text></svg>'
    )
