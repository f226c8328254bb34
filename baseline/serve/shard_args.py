"""What a `POST /v1/shard` request may ask: each op's arguments, typed and bounded.

A detection node asks in batches of plain JSON (baseline/detect/remote.py). The shard
checks every argument before any work: the bucket span must be the shard's own (another
span would fold the whole store again under it), times are whole seconds in the
accepted range, a window is at most history + 30 days long, lists hold at most `MAX_ITEMS`
items and strings at most `MAX_TEXT` characters. A request that does not fit is a 400
naming the argument; it never reaches the store, so it never marks the store failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rarenet.baseline.units import EARLIEST, LATEST

MAX_ITEMS = 1_000_000  # entries of one list argument (100k candidates at 10k hosts)
MAX_TEXT = 8192  # characters of one string (paths are capped at 4 KiB on ingest)
MAX_WINDOW = 400 * 86400  # how far before 1970 a window's start may reach
SLACK = 30 * 86400  # a window is at most history plus this (the look-back, a catch-up)

Check = Callable[[Any, str], Any]


class BadArgument(ValueError):
    """An argument that does not fit its op; the message names it."""


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadArgument(f"{where} must be a whole number, got {type(value).__name__}")
    return value


def _time(value: Any, where: str) -> int:
    seconds = _int(value, where)
    if not -MAX_WINDOW <= seconds <= LATEST:  # window starts may reach before 1970
        raise BadArgument(f"{where} must be unix seconds in {EARLIEST}…{LATEST}")
    return seconds


def _count(value: Any, where: str) -> int:
    number = _int(value, where)
    if not 0 <= number <= 1 << 31:
        raise BadArgument(f"{where} must be a count in 0…{1 << 31}")
    return number


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise BadArgument(f"{where} must be a string of at most {MAX_TEXT} characters")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadArgument(f"{where} must be true or false")
    return value


def _kind(value: Any, where: str) -> str:
    if value not in ("path", "name"):
        raise BadArgument(f'{where} must be "path" or "name"')
    return str(value)


def _list(item: Check) -> Check:
    def check(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise BadArgument(f"{where} must be a list of at most {MAX_ITEMS:,} items")
        return [item(entry, f"{where}[{n}]") for n, entry in enumerate(value)]

    return check


def _row(*items: Check) -> Check:
    def check(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list) or len(value) != len(items):
            raise BadArgument(f"{where} must be a list of {len(items)} values")
        pairs = enumerate(zip(items, value, strict=True))
        return [item(entry, f"{where}[{n}]") for n, (item, entry) in pairs]

    return check


def _optional(item: Check) -> Check:
    def check(value: Any, where: str) -> Any:
        return None if value is None else item(value, where)

    return check


_RANGE = _row(_kind, _text, _time, _time)
_CANDIDATE = _row(_time, _text, _text, _text, _count)
SPAN, HISTORY = "span", "history"  # checked against the shard's own settings

OPS: dict[str, dict[str, Check | str]] = {
    "refresh": {"span": SPAN},
    "candidates": {"span": SPAN, "low": _time, "high": _time},
    "fleet_buckets": {"span": SPAN, "low": _time, "high": _time},
    "key_buckets": {"span": SPAN, "ranges": _list(_RANGE)},
    "hosts_in_window": {"span": SPAN, "ranges": _list(_row(_kind, _text, _time, _time, _count))},
    "hosts_in_bucket": {"span": SPAN, "keys": _list(_row(_kind, _text, _time))},
    "pair_stats": {
        "span": SPAN,
        "history": HISTORY,
        "rows": _list(_CANDIDATE),
        "rare": _list(_flag),
        "until": _optional(_list(_time)),
    },
    "suspect_usage": {
        "span": SPAN,
        "history": HISTORY,
        "asks": _list(_row(_text, _text, _text, _time, _list(_time))),
    },
    "peer_uses": {
        "span": SPAN,
        "history": HISTORY,
        "asks": _list(_row(_text, _text, _list(_time))),
    },
    "name_elsewhere": {"span": SPAN, "history": HISTORY, "rows": _list(_CANDIDATE)},
    "clean_bounds": {
        "span": SPAN,
        "asks": _list(_row(_kind, _text, _time, _time, _list(_row(_text, _text, _time)))),
    },
    "first_remotes": {"first_ids": _list(_count)},
    "remembered": {"span": SPAN, "pairs": _list(_row(_text, _text, _text))},
    "first_endpoints": {"first_ids": _list(_count)},
    "binary_users": {
        "span": SPAN,
        "asks": _list(_row(_text, _text, _text, _text, _time, _time)),
    },
    "destination_hosts": {
        "span": SPAN,
        "asks": _list(_row(_text, _text, _int, _time, _time, _text)),
    },
    "shell_destinations": {"span": SPAN, "pairs": _list(_row(_text, _text))},
    "detail": {"first_id": _count},
    "observations_in": {"start": _time, "end": _time},
    "last_seen": {"span": SPAN, "host": _text, "exe": _text, "before": _time},
    "data_end": {"span": SPAN},
    "fold_mark": {"span": SPAN},
    "backlog": {"span": SPAN, "low": _time, "high": _time, "mark": _count},
    "pending_candidates": {"span": SPAN, "bucket": _time, "mark": _count},
    "settle": {"span": SPAN, "low": _time, "high": _time, "mark": _count},
    "drop_too_old": {"span": SPAN, "before": _time, "run_at": _time},
}
_WINDOWS = (("low", "high"), ("start", "end"))


def checked(op: str, args: Any, span: int, history: int) -> dict[str, Any]:
    """`args` of `op`, every one checked (BadArgument names the first that does not
    fit): exactly the op's arguments, the shard's own span and history, bounded times,
    windows, lists and strings."""
    shape = OPS.get(op)
    if shape is None:
        raise BadArgument(f"op must be one of {sorted(OPS)}")
    if not isinstance(args, dict) or set(args) - set(shape) or set(shape) - set(args) - {"until"}:
        raise BadArgument(f"{op} takes exactly {sorted(shape)}")
    out: dict[str, Any] = {}
    for name, check in shape.items():
        if name not in args:
            continue
        value = args[name]
        if check == SPAN:
            if _int(value, name) != span:
                raise BadArgument(f"span must be this shard's [detect] bucket_span ({span})")
        elif check == HISTORY:
            if _int(value, name) != history:
                raise BadArgument(f"history must be this shard's [detect] history ({history})")
        else:
            assert callable(check)
            value = check(value, name)
        out[name] = value
    widest = history + SLACK
    for low, high in _WINDOWS:
        if low in out and not 0 <= out[high] - out[low] <= widest:
            raise BadArgument(f"{low}…{high} must be a window of at most history + 30d ({widest}s)")
    return out
