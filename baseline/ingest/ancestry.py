"""The process chain of a pack-query row: up to three ancestors of the socket's holder.

The pack query (queries/rarenet_open_sockets.sql) gives `parent`, `parent_name`,
`parent_path`, `parent_cmdline`, then `grandparent…` and `great_grandparent…`; older
packs give only `parent` and `parent_name`. Stored in `observations.ancestors` as a
compact JSON array of `[pid, name, path, cmdline]`, nearest first, "" when the row
names no ancestor beyond the parent's pid and name (the common case costs nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

LEVELS = ("parent", "grandparent", "great_grandparent")
ANCESTOR_TEXT_LIMIT = 1024  # per name, path and cmdline of an ancestor
_EXTRA_KEYS = ("parent_path", "parent_cmdline", "grandparent")

ToInt = Callable[[Any, str, int, int], int]
ToText = Callable[[Any, str], str]


def ancestors_json(row: Mapping[str, Any], to_int: ToInt, to_text: ToText) -> str:
    """The row's ancestors as stored, or "" when it has no ancestor columns.

    `to_int` and `to_text` are the ingest's field converters, so a malformed value is
    a RowError naming its column, like any other field."""
    if not any(key in row for key in _EXTRA_KEYS):
        return ""
    chain: list[list[Any]] = []
    for level in LEVELS:
        pid = to_int(row.get(level, -1), level, -1, 2**31)
        name = to_text(row.get(f"{level}_name"), f"{level}_name")[:ANCESTOR_TEXT_LIMIT]
        path = to_text(row.get(f"{level}_path"), f"{level}_path")[:ANCESTOR_TEXT_LIMIT]
        cmdline = to_text(row.get(f"{level}_cmdline"), f"{level}_cmdline")
        if pid <= 0 and not (name or path):
            break  # the chain ends where the query's LEFT JOIN found nothing
        chain.append([pid, name, path, cmdline[:ANCESTOR_TEXT_LIMIT]])
    return orjson.dumps(chain).decode() if chain else ""
