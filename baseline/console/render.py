"""The templates' environment: autoescape everywhere, every value made inert, and the
filters the pages share. `render(name, **context)` is all the console and report call."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from rarenet.baseline import __version__
from rarenet.baseline.console.inert import inert
from rarenet.baseline.detect.late import LATE_AFTER
from rarenet.baseline.units import format_age, format_time

STATIC = Path(__file__).parent / "static"


class Links:
    """Where the console's links go: pages of the server."""

    anchors = False

    def signal(self, sid: str) -> str:
        return f"/signals/{quote(sid, safe='')}"

    def host(self, host: str) -> str:
        return f"/host?{urlencode({'name': host})}"

    def binary(self, key: str) -> str:
        return f"/binary?{urlencode({'key': key})}"


class Anchors(Links):
    """Where the report's links go: sections of the same file (a host links nowhere)."""

    anchors = True

    def signal(self, sid: str) -> str:
        return f"#signal-{quote(sid, safe='')}"

    def host(self, host: str) -> str:
        return ""

    def binary(self, key: str) -> str:
        return f"#{binary_anchor(key)}"


def binary_anchor(key: str) -> str:
    """A stable fragment id for a binary's section (the key itself may be hostile)."""
    return "binary-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` passes here: markup built by the plots stays, text is made inert
    (autoescape then escapes it)."""
    if isinstance(value, Markup) or value is None:
        return "" if value is None else value
    return inert(value)


def _when(unix: Any) -> str:
    if unix is None or unix == "":
        return "—"
    return format_time(float(unix)).replace("T", " ").replace("Z", "")


def _ago(unix: Any) -> str:
    if unix is None or unix == "":
        return "—"
    return f"{format_age(max(0.0, time.time() - float(unix)))} ago"


def _query(values: dict[str, str]) -> str:
    return urlencode(values)


_ENV = Environment(
    loader=PackageLoader("rarenet.baseline.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    finalize=_finalize,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(when=_when, ago=_ago, age=format_age, query=_query, anchor=binary_anchor)
_ENV.globals.update(version=__version__, late_after=LATE_AFTER)


def render(name: str, *, links: Links | None = None, **context: Any) -> str:
    """Template `name` rendered with `context` (links: the console's, unless given)."""
    return _ENV.get_template(name).render(links=links or Links(), **context)
