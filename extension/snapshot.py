"""Read a baseline snapshot (docs/snapshot.md, format version 1) into a compact index.

The snapshot is the only thing the extension knows about the fleet. Parsing turns each
entry into a slotted `Entry` as soon as json meets it (an `object_hook`), so a 50k-entry
snapshot never exists as 50k dicts, and indexes entries by path and by name. A document
that is not a version-1 snapshot raises `SnapshotError` saying what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SNAPSHOT_VERSION = 1
# Bounds on every number: a value outside them is refused with the snapshot (the last
# good one stays in use), so scoring never meets an overflow or a nonsense span.
MAX_COUNT = 10**12  # hosts, host-buckets, buckets (10M hosts × 100k buckets)
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z
MAX_SPAN = 7 * 86400  # bucket_span, seconds
MAX_HISTORY = 10 * 366 * 86400  # history, seconds
MAX_ENTRIES = 200_000  # entries: keeps a snapshot's parse under 200 MiB (docs/extension.md)
_ENTRY_KEYS = frozenset({"name", "path", "hosts", "host_buckets"})


class SnapshotError(ValueError):
    """A document that is not a usable snapshot."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One (name, path) the fleet used in the baseline window."""

    name: str
    path: str
    hosts: int
    host_buckets: int
    first_seen: int  # unix seconds (bucket start)
    last_seen: int
    rarity: float
    on_host: int | None  # host_buckets_on_host; None when the snapshot has no host


Group = Entry | tuple[Entry, ...]


@dataclass(frozen=True)
class Fleet:
    host_buckets: int  # F
    hosts: int  # N
    buckets: int
    since: int | None
    mature: bool


@dataclass
class Snapshot:
    version: int
    generated_at: int
    data_time: int
    host: str | None
    bucket_span: int
    history: int
    warmup_buckets: int
    fleet: Fleet
    entries: list[Entry]
    host_active_buckets: int | None = None  # optional `host_activity` (additive field)
    mature_buckets: int | None = None
    by_path: dict[str, Group] = field(default_factory=dict)
    by_name: dict[str, Group] = field(default_factory=dict)

    def path_entries(self, path: str) -> tuple[Entry, ...]:
        return _as_tuple(self.by_path.get(path))

    def name_entries(self, name: str) -> tuple[Entry, ...]:
        return _as_tuple(self.by_name.get(name))


def _as_tuple(group: Group | None) -> tuple[Entry, ...]:
    if group is None:
        return ()
    return group if isinstance(group, tuple) else (group,)


def parse_snapshot(data: bytes | str) -> Snapshot:
    """A `Snapshot` from JSON text; `SnapshotError` when it is not a version-1 snapshot."""
    return from_document(load_document(data))


def load_document(data: bytes | str) -> dict[str, Any]:
    """The parsed JSON, entries already compact (the text can be dropped after this)."""
    times: dict[Any, int] = {}
    strings: dict[str, str] = {}
    floats: dict[str, float] = {}
    ints: dict[str, int] = {}

    def parse_float(text: str) -> float:  # rarities repeat: keep one object per value
        value = floats.get(text)
        if value is None:
            value = floats[text] = float(text)
        return value

    def parse_int(text: str) -> int:
        value = ints.get(text)
        if value is None:
            value = ints[text] = int(text)
        return value

    try:
        document = json.loads(
            data,
            object_hook=lambda obj: _hook(obj, times, strings),
            parse_float=parse_float,
            parse_int=parse_int,
        )
    except SnapshotError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SnapshotError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SnapshotError("not a snapshot: the document is not a JSON object")
    version = document.get("version")
    if version != SNAPSHOT_VERSION or isinstance(version, bool):
        raise SnapshotError(
            f"unsupported snapshot version {version!r} (this extension reads version "
            f"{SNAPSHOT_VERSION}; upgrade the extension or export a version-{SNAPSHOT_VERSION} snapshot)"
        )
    return document


def from_document(document: dict[str, Any]) -> Snapshot:
    """Validate the parsed document and index its entries."""
    return _build(document, {})


def _hook(obj: dict[str, Any], times: dict[Any, int], strings: dict[str, str]) -> Any:
    if not obj.keys() >= _ENTRY_KEYS:
        return obj
    try:
        name, path = obj["name"], obj["path"]
        if not isinstance(name, str) or not isinstance(path, str):
            raise TypeError("name and path must be strings")
        on_host = obj.get("host_buckets_on_host")
        return Entry(
            name=strings.setdefault(name, name),
            path=strings.setdefault(path, path),
            hosts=_count(obj["hosts"]),
            host_buckets=_count(obj["host_buckets"]),
            first_seen=_time(obj.get("first_seen"), times),
            last_seen=_time(obj.get("last_seen"), times),
            rarity=_fraction(obj.get("rarity", 0.0)),
            on_host=None if on_host is None else _count(on_host),
        )
    except (TypeError, ValueError) as exc:
        label = obj.get("path") or obj.get("name")
        raise SnapshotError(f"bad entry {label!r}: {exc}") from None


def _build(doc: dict[str, Any], times: dict[Any, int]) -> Snapshot:
    try:
        entries = doc["entries"]
        fleet = doc["fleet"]
        if not isinstance(entries, list) or not all(isinstance(e, Entry) for e in entries):
            raise TypeError(
                "entries must be a list of entries with name, path, hosts, host_buckets"
            )
        if not isinstance(fleet, dict):
            raise TypeError("fleet must be an object")
        if len(entries) > MAX_ENTRIES:
            raise ValueError(f"{len(entries):,} entries, over the limit of {MAX_ENTRIES:,}")
        activity = doc.get("host_activity")
        snapshot = Snapshot(
            version=SNAPSHOT_VERSION,
            generated_at=_time(doc.get("generated_at"), times),
            data_time=_time(doc["data_time"], times),
            host=doc.get("host") if isinstance(doc.get("host"), str) else None,
            bucket_span=max(1, _count(doc.get("bucket_span", 900), MAX_SPAN)),
            history=max(1, _count(doc.get("history", 1209600), MAX_HISTORY)),
            warmup_buckets=_count(doc.get("warmup_buckets", 20)),
            fleet=Fleet(
                host_buckets=_count(fleet["host_buckets"]),
                hosts=_count(fleet["hosts"]),
                buckets=_count(fleet.get("buckets", 0)),
                since=_time(fleet["since"], times) if fleet.get("since") else None,
                mature=bool(fleet.get("mature", False)),
            ),
            entries=entries,
        )
        if isinstance(activity, dict):
            snapshot.host_active_buckets = _count(activity["active_buckets"])
            snapshot.mature_buckets = max(1, _count(activity["mature_buckets"]))
    except KeyError as exc:
        raise SnapshotError(f"not a snapshot: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"not a snapshot: {exc}") from None
    snapshot.by_path = _index(entries, "path")
    snapshot.by_name = _index(entries, "name")
    return snapshot


def _index(entries: list[Entry], attribute: str) -> dict[str, Group]:
    index: dict[str, Group] = {}
    for entry in entries:
        key = getattr(entry, attribute)
        held = index.get(key)
        if held is None:
            index[key] = entry
        elif isinstance(held, tuple):
            index[key] = (*held, entry)
        else:
            index[key] = (held, entry)
    return index


def _count(value: Any, high: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a count")
    if not math.isfinite(value) or not 0 <= value <= high:
        raise ValueError(f"{_shown(value)} is not a count from 0 to {high:,}")
    return int(value)


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"{_shown(value)} is not a number from 0 to 1")
    return float(value)


def _shown(value: int | float) -> str:
    """A number for an error message, never thousands of digits long."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"


def _time(value: Any, memo: dict[Any, int]) -> int:
    """Unix seconds from an ISO 8601 string (as exported) or a number."""
    if value is None:
        return 0
    known = memo.get(value)
    if known is not None:
        return known
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value <= MAX_TIME:  # 1e999 parses as inf
            raise ValueError(f"{_shown(value)} is not a time from 1970 to 9999")
        result = int(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} has no time zone")
        result = int(parsed.timestamp())
        if not 0 <= result <= MAX_TIME:
            raise ValueError(f"{value!r} is before 1970")
    else:
        raise TypeError(f"{value!r} is not a time")
    memo[value] = result
    return result
