"""osquery / Fleet result documents → observations. Raw JSON stays in this module.

Accepted shapes (DESIGN.md §5), one JSON document per line or inside arrays:
differential events (`columns` + `action`), snapshots (`snapshot` + `action:
snapshot`), batches (`diffResults`), and Fleet webhook bodies (`{"timestamp",
"details": [...]}`). Only `added` rows are activity.
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from rarenet.baseline.ingest.model import RARENET_QUERIES, Observation
from rarenet.baseline.ingest.normalise import (
    MAX_TIME,
    MIN_TIME,
    Filtered,
    Normaliser,
    RowError,
    to_int,
)

MAX_DEPTH = 3  # array → Fleet body → result objects
PEER_COLUMNS = ("remote_address", "remote_port")


class LineError(ValueError):
    """A document (or part of it) that is not a usable osquery result."""


@dataclass
class LineResult:
    """What one input line (or document) yielded."""

    observations: list[Observation] = field(default_factory=list)
    filtered: int = 0  # rows deliberately not kept (loopback, unix sockets, excluded…)
    skipped: int = 0  # rows of other queries, or `removed` rows
    errors: list[str] = field(default_factory=list)  # what was wrong, in order found


def query_name(name: str) -> str:
    """The bare query name: strips `pack/<pack>/` (split on the first two `/` only)
    and osquery's default `pack_<pack>_` delimiter form for rarenet's own queries."""
    if name.startswith("pack/"):
        parts = name.split("/", 2)
        return parts[2] if len(parts) == 3 else name
    if name.startswith("pack_"):
        for query in RARENET_QUERIES:
            if name.endswith("_" + query):
                return query
    return name


_calendar_cache: dict[str, int] = {}


def calendar_time(text: str) -> int:
    """Unix seconds from osquery's `calendarTime` (`Mon Jan  5 00:01:00 2026 UTC`)."""
    cached = _calendar_cache.get(text)
    if cached is None:
        import calendar

        try:
            parsed = _time.strptime(text.replace(" UTC", "").strip(), "%a %b %d %H:%M:%S %Y")
        except ValueError:
            raise LineError(f"calendarTime {text[:40]!r} is not osquery's format") from None
        cached = calendar.timegm(parsed)
        if len(_calendar_cache) > 10_000:
            _calendar_cache.clear()
        _calendar_cache[text] = cached
    return cached


class Parser:
    """Parses lines and documents with one `Normaliser`."""

    def __init__(self, normaliser: Normaliser):
        self.normaliser = normaliser

    def parse_line(self, line: bytes) -> LineResult:
        """Parse one line; never raises for bad input (errors are in the result)."""
        result = LineResult()
        result.errors = self.parse_into(line, result)
        return result

    def parse_into(self, line: bytes, result: LineResult) -> list[str]:
        """Parse one line, adding its observations and counts to `result` (which may
        gather a whole chunk); return this line's errors."""
        errors: list[str] = []
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            document = self._decode_lossy(line, exc, errors)
            if document is None:
                return errors
        try:
            self._document(document, result, errors, 0)
        except Exception as exc:  # a defect must cost one line, never the whole ingest
            errors.append(f"internal error while parsing ({type(exc).__name__}: {exc})")
        return errors

    @staticmethod
    def _decode_lossy(line: bytes, exc: Exception, errors: list[str]) -> Any:
        """Retry a line whose only fault is invalid UTF-8 (osquery passes raw bytes of
        cmdlines through), replacing the bad bytes with U+FFFD."""
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            try:
                return orjson.loads(line.decode("utf-8", "replace"))
            except orjson.JSONDecodeError as second:
                exc = second
        errors.append(f"not valid JSON: {exc}")
        return None

    def _document(self, document: Any, result: LineResult, errors: list[str], depth: int) -> None:
        if type(document) is dict and "name" in document:
            try:
                self._result_object(document, result, errors)
            except LineError as exc:
                errors.append(str(exc))
            return
        if isinstance(document, list):
            if depth >= MAX_DEPTH:
                errors.append("arrays nested too deeply")
                return
            for item in document:
                self._document(item, result, errors, depth + 1)
            return
        if not isinstance(document, dict):
            errors.append(f"expected a JSON object, got {type(document).__name__}")
            return
        details = document.get("details")
        if isinstance(details, list):  # Fleet webhook body
            if depth >= MAX_DEPTH:
                errors.append("documents nested too deeply")
                return
            for item in details:
                self._document(item, result, errors, depth + 1)
            return
        errors.append("result object has no query `name`")

    def _result_object(self, obj: Mapping[str, Any], result: LineResult, errors: list[str]) -> None:
        rows, action, removed = _rows_of(obj)
        result.skipped += removed
        if action == "removed":
            result.skipped += len(rows)
            return
        raw_name = obj.get("name")
        if not isinstance(raw_name, str) or not raw_name:
            raise LineError("result object has no query `name`")
        query = query_name(raw_name)
        if query not in RARENET_QUERIES and not _looks_like_sockets(rows):
            result.skipped += len(rows)
            return
        host, host_uuid = _host_of(obj)
        when = _time_of(obj)
        listening = _listening(rows) if len(rows) > 1 else frozenset()
        observe = self.normaliser.observe
        append = result.observations.append
        for index, row in enumerate(rows):
            if type(row) is not dict:
                errors.append(f"row {index + 1}: expected an object")
                continue
            try:
                append(observe(row, when, host, host_uuid, query, listening))
            except Filtered:
                result.filtered += 1
            except RowError as exc:
                where = f"row {index + 1}: " if len(rows) > 1 else ""
                errors.append(f"{where}{exc}")


def _rows_of(obj: Mapping[str, Any]) -> tuple[list[Any], str, int]:
    """The rows of a result object, its action (`added`, `removed`, `snapshot`) and how
    many `removed` rows of a batch were left out."""
    if "columns" in obj:
        columns = obj["columns"]
        if not isinstance(columns, dict):
            raise LineError("`columns` is not an object")
        action = obj.get("action", "added")
        if action not in ("added", "removed"):
            raise LineError(f"unknown action {str(action)[:20]!r}")
        return [columns], action, 0
    if "snapshot" in obj:
        rows = obj["snapshot"]
        if not isinstance(rows, list):
            raise LineError("`snapshot` is not an array")
        return rows, "snapshot", 0
    if "diffResults" in obj:
        diff = obj["diffResults"]
        if not isinstance(diff, dict):
            raise LineError("`diffResults` is not an object")
        added = diff.get("added") or []
        removed = diff.get("removed") or []
        if not isinstance(added, list):
            raise LineError("`diffResults.added` is not an array")
        return added, "added", len(removed) if isinstance(removed, list) else 0
    raise LineError("not an osquery result (no columns, snapshot or diffResults)")


def _looks_like_sockets(rows: Iterable[Any]) -> bool:
    """An admin's own query is welcome if its rows carry a peer and a process."""
    for row in rows:
        return (
            isinstance(row, dict)
            and all(column in row for column in PEER_COLUMNS)
            and ("path" in row or "name" in row)
        )
    return False


def _host_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    decorations = obj.get("decorations")
    if not isinstance(decorations, dict):
        decorations = {}
    host_uuid = decorations.get("host_uuid")
    host_uuid = host_uuid if isinstance(host_uuid, str) else ""
    for candidate in (obj.get("hostIdentifier"), obj.get("hostname"), decorations.get("hostname")):
        if isinstance(candidate, str) and candidate:
            return candidate[:255], host_uuid[:64]
    if host_uuid:
        return host_uuid[:255], host_uuid[:64]
    raise LineError("result object has no hostIdentifier (or hostname)")


def _time_of(obj: Mapping[str, Any]) -> int:
    unix = obj.get("unixTime")
    if unix is not None and unix != "":
        try:
            return to_int(unix, "unixTime", MIN_TIME, MAX_TIME)
        except RowError as exc:
            raise LineError(str(exc)) from None
    calendar = obj.get("calendarTime")
    if isinstance(calendar, str):
        return calendar_time(calendar)
    raise LineError("result object has no unixTime or calendarTime")


def _listening(rows: Iterable[Any]) -> frozenset[tuple[int, int]]:
    """(pid, port) pairs a process listens on, from LISTEN rows in the same result."""
    pairs = set()
    for row in rows:
        if isinstance(row, dict) and row.get("state") == "LISTEN":
            try:
                pairs.add((int(row.get("pid", -1)), int(row.get("local_port", 0))))
            except (TypeError, ValueError):
                continue
    return frozenset(pairs)
