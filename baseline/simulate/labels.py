"""Labels: one malicious activity per JSON line, for backtests and tests.

`{"hostIdentifier", "path" and/or "name", "from", "to", "technique", "description",
"family"}`, times in unix seconds (DESIGN.md §4). `family` is the difficulty class of the
scenario (docs/quality.md): never-seen, masquerade, host-novelty, spread, repeat,
child-shell; readers treat a missing family as "".
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from rarenet.baseline.errors import InputError
from rarenet.baseline.simulate.writer import Writable

T = TypeVar("T")


@dataclass(frozen=True)
class Label:
    """A labelled malicious activity: its rows are on `host`, by `path`/`name`, in [start, end]."""

    host: str
    path: str
    name: str
    start: int
    end: int
    technique: str = ""
    description: str = ""
    family: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON Lines object of this label."""
        return {
            "hostIdentifier": self.host,
            "path": self.path,
            "name": self.name,
            "from": self.start,
            "to": self.end,
            "technique": self.technique,
            "description": self.description,
            "family": self.family,
        }


def write_labels(out: Writable, labels: Iterable[Label]) -> int:
    """Write labels as JSON Lines; returns how many."""
    count = 0
    for label in labels:
        out.write(orjson.dumps(label.to_json(), option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count


def _time(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f'"{key}" must be unix seconds, got {value!r}')
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f'"{key}" must be unix seconds, got {value!r}') from None


def parse_label(line: bytes | str) -> Label:
    """One label from one JSON line; raises ValueError saying what is wrong."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("a label must be a JSON object")
    host = doc.get("hostIdentifier")
    if not isinstance(host, str) or not host:
        raise ValueError('"hostIdentifier" must be a non-empty string')
    path, name = doc.get("path") or "", doc.get("name") or ""
    if not isinstance(path, str) or not isinstance(name, str) or not (path or name):
        raise ValueError('a label needs a "path" and/or a "name" (strings)')
    start, end = _time(doc, "from"), _time(doc, "to")
    if end < start:
        raise ValueError(f'"to" ({end}) is before "from" ({start})')
    technique, description = doc.get("technique", ""), doc.get("description", "")
    family = doc.get("family", "")
    return Label(host, path, name, start, end, str(technique), str(description), str(family))


def read_labels(path: str | Path) -> list[Label]:
    """All labels of a JSON Lines file (gzip if it ends in .gz); blank lines are skipped.

    Raises InputError naming `file:line` for a line that is not a label.
    """
    return read_json_lines(
        path,
        parse_label,
        "label",
        hint='expected {"hostIdentifier", "path" and/or "name", "from", "to"}',
    )


def read_json_lines(
    path: str | Path, parse: Callable[[bytes], T], what: str, *, hint: str
) -> list[T]:
    """Every non-blank line of a JSON Lines file (gzip if it ends in .gz) through
    `parse`, which raises ValueError saying what is wrong; InputError names `file:line`."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    items = []
    try:
        with opener(path, "rb") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    items.append(parse(line))
                except ValueError as exc:
                    raise InputError(
                        f"bad {what}: {exc}", where=f"{path}:{lineno}", hint=hint
                    ) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}s: {exc.strerror or exc}", where=str(path)) from None
    return items
