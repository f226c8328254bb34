"""Parse the value formats of DESIGN.md §3: durations, sizes and times."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|K|M|G)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


_RELATIVE = re.compile(r"^\s*\d+(?:\.\d+)?\s*[smhdw]\s*$")


def parse_expiry(value: str, now: float) -> int:
    """An expiry as unix seconds: a duration from `now` with its unit (`30d`, `12h`,
    `2w`) or a time (unix seconds, ISO 8601) after `now`; raises ValueError naming both
    forms, or saying the time is already past."""
    if _RELATIVE.match(value):
        return int(now + parse_duration(value.strip()))
    try:
        at = parse_time(value)
    except (ValueError, OverflowError):
        raise ValueError(
            f"{value!r} is neither a duration (30d, 12h) nor a time (unix seconds, ISO 8601)"
        ) from None
    if at <= now:
        raise ValueError(
            f"{value!r} is already past (a bare number is a unix time; a duration needs its "
            "unit: 30d, 12h)"
        )
    return at


def parse_duration(value: str | int | float) -> float:
    """Seconds from `90`, `90s`, `15m`, `1.5h`, `14d` or `2w`; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 90s, 15m, 1.5h, 14d)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes from `65536`, `64KiB`, `16MiB` or `1GiB`; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a size (use bytes or e.g. 64KiB, 16MiB, 1GiB)")
        size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    if size < 0:
        raise ValueError(f"{value!r} is negative")
    return size


def parse_time(value: str | int | float) -> int:
    """Unix seconds from unix seconds (number or digits) or an ISO 8601 timestamp.

    A timestamp without a zone is taken as UTC.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        return _in_range(value, value)
    text = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return _in_range(float(text), value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time (use unix seconds or ISO 8601, e.g. 2026-01-05T00:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _in_range(parsed.timestamp(), value)


EARLIEST, LATEST = 0, 253_402_300_799  # 1970-01-01T00:00:00Z … 9999-12-31T23:59:59Z


def _in_range(seconds: float, value: object) -> int:
    if not EARLIEST <= seconds <= LATEST:  # also refuses inf and nan
        raise ValueError(
            f"{value!r} is outside the times rarenet accepts: 1970-01-01T00:00:00Z "
            f"({EARLIEST}) … 9999-12-31T23:59:59Z ({LATEST})"
        )
    return int(seconds)


def format_duration(seconds: float) -> str:
    """The shortest exact form of a duration: 900 → `15m`, 5400 → `90m`, 86400 → `1d`."""
    for unit in ("d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_time(unix: int | float) -> str:
    """ISO 8601 UTC with a `Z`, seconds precision."""
    return datetime.fromtimestamp(int(unix), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_age(seconds: float) -> str:
    """A readable length of time: `13.1d`, `33.5h`, `45m`, `30s`."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"
