"""Load `queries/*.sql`: one statement per file, metadata in `-- @tag: value` lines.

A file starts with a comment block; tag lines in it carry the metadata, every other
comment line is prose for humans. The SQL statement follows the block:

    -- @interval: 60
    -- @platform: linux
    -- @description: Live inet sockets of processes with a remote peer.
    -- @min_osquery_version: 5.0.0
    -- @optional: false          (default false)
    SELECT ... ;
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rarenet.baseline.errors import InputError

NAME_RE = re.compile(r"^[a-z0-9_]+$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
TAG_RE = re.compile(r"^--\s*@([A-Za-z_][A-Za-z0-9_]*)\s*:(.*)$")
RESERVED_SUFFIXES = ("epoch", "counter")  # osquery adds these keys to every result line
PLATFORMS = frozenset({"linux", "darwin", "windows"})  # what osquery and Fleet both accept
MAX_INTERVAL = 604_800  # one week: osquery's and Fleet's ceiling
REQUIRED_TAGS = ("interval", "platform", "description", "min_osquery_version")
KNOWN_TAGS = (*REQUIRED_TAGS, "optional")


@dataclass(frozen=True)
class Query:
    """One scheduled query: its name (the file stem), statement and metadata."""

    name: str
    sql: str
    description: str
    interval: int
    platform: str
    min_osquery_version: str
    optional: bool
    path: Path


def leave_out(queries: list[Query], names: tuple[str, ...]) -> list[Query]:
    """`queries` without the optional ones named (`socket_events` or
    `rarenet_socket_events`); InputError for an unknown name or a required query."""
    by_name = {q.name: q for q in queries}
    dropped: set[str] = set()
    optional = ", ".join(q.name for q in queries if q.optional) or "none"
    for name in names:
        query = by_name.get(name) or by_name.get(f"rarenet_{name}")
        if query is None:
            raise InputError(
                f"no query named {name!r}", where="--without", hint=f"optional queries: {optional}"
            )
        if not query.optional:
            raise InputError(
                f"{query.name} is required (rarenet's rule reads it), not optional",
                where="--without",
                hint=f"optional queries: {optional}",
            )
        dropped.add(query.name)
    return [q for q in queries if q.name not in dropped]


def load_queries(directory: Path | str) -> list[Query]:
    """Every `*.sql` in `directory`, sorted by name; InputError names the bad file."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(
            "queries directory not found",
            where=str(folder),
            hint="check the directory passed with --queries DIR",
        )
    paths = sorted(folder.glob("*.sql"))
    if not paths:
        raise InputError("no *.sql files", where=str(folder), hint="add one query per file")
    return [load_query(path) for path in paths]


def load_query(path: Path) -> Query:
    """Parse and validate one `.sql` file."""
    name = path.stem
    if not NAME_RE.match(name):
        raise InputError(
            f"query name {name!r} must match ^[a-z0-9_]+$", where=str(path), hint="rename the file"
        )
    if name.endswith(RESERVED_SUFFIXES):
        raise InputError(
            f"query name {name!r} ends with a word osquery reserves (epoch, counter)",
            where=str(path),
            hint="rename the file",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", where=str(path)) from exc
    lines = text.splitlines()
    header_end = _header_end(lines)
    tags = _parse_tags(path, lines[:header_end])
    sql = _statement(path, lines, header_end)
    return Query(
        name=name,
        sql=sql,
        description=tags["description"][1],
        interval=_interval(path, *tags["interval"]),
        platform=_platform(path, *tags["platform"]),
        min_osquery_version=_version(path, *tags["min_osquery_version"]),
        optional=_boolean(path, *tags["optional"]) if "optional" in tags else False,
        path=path,
    )


def _header_end(lines: list[str]) -> int:
    """Index of the first line that is neither blank nor a `--` comment."""
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            return index
    return len(lines)


def _parse_tags(path: Path, header: list[str]) -> dict[str, tuple[int, str]]:
    tags: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(header, start=1):
        match = TAG_RE.match(line.strip())
        if not match:
            continue
        key, value = match.group(1), match.group(2).strip()
        where = f"{path}:{number}"
        if key not in KNOWN_TAGS:
            raise InputError(
                f"unknown tag @{key}", where=where, hint=f"known tags: {', '.join(KNOWN_TAGS)}"
            )
        if key in tags:
            raise InputError(f"duplicate tag @{key}", where=where)
        if not value:
            raise InputError(f"tag @{key} has no value", where=where)
        tags[key] = (number, value)
    missing = [key for key in REQUIRED_TAGS if key not in tags]
    if missing:
        raise InputError(
            f"missing tag(s): {', '.join('@' + key for key in missing)}",
            where=str(path),
            hint="add `-- @tag: value` lines to the leading comment block",
        )
    return tags


def _statement(path: Path, lines: list[str], start: int) -> str:
    body = [line.rstrip() for line in lines[start:]]
    while body and not body[-1]:
        body.pop()
    sql = "\n".join(body)
    if not sql.strip():
        raise InputError("no SQL statement", where=str(path), hint="one SELECT per file")
    trailing = _after_first_statement(sql)
    if trailing is not None:
        line = start + sql[:trailing].count("\n") + 1
        raise InputError(
            "more than one SQL statement", where=f"{path}:{line}", hint="one statement per file"
        )
    return sql


def _after_first_statement(sql: str) -> int | None:
    """Offset of SQL that follows the first top-level `;`, or None if there is none.

    Skips string literals, quoted identifiers and comments, so a `;` inside them
    does not end the statement.
    """
    index, size, ended = 0, len(sql), False
    while index < size:
        char = sql[index]
        if sql.startswith("--", index):
            newline = sql.find("\n", index)
            index = size if newline < 0 else newline + 1
            continue
        if sql.startswith("/*", index):
            close = sql.find("*/", index + 2)
            index = size if close < 0 else close + 2
            continue
        if char.isspace():
            index += 1
            continue
        if ended:
            return index
        if char in "'\"`[":
            index = _skip_quoted(sql, index)
            continue
        if char == ";":
            ended = True
        index += 1
    return None


def _skip_quoted(sql: str, index: int) -> int:
    closer = "]" if sql[index] == "[" else sql[index]
    position = index + 1
    while position < len(sql):
        if sql[position] == closer:
            if closer != "]" and sql.startswith(closer * 2, position):
                position += 2  # doubled quote inside the literal
                continue
            return position + 1
        position += 1
    return position


def _interval(path: Path, line: int, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_INTERVAL:
        raise InputError(
            f"@interval must be whole seconds in 1..{MAX_INTERVAL}, got {value!r}",
            where=f"{path}:{line}",
        )
    return int(value)


def _platform(path: Path, line: int, value: str) -> str:
    parts = [part.strip() for part in value.split(",")]
    if not all(part in PLATFORMS for part in parts):
        raise InputError(
            f"@platform must be a comma-separated list of {', '.join(sorted(PLATFORMS))}, got {value!r}",
            where=f"{path}:{line}",
        )
    return ",".join(parts)


def _version(path: Path, line: int, value: str) -> str:
    if not VERSION_RE.match(value):
        raise InputError(
            f"@min_osquery_version must look like 5.0.0, got {value!r}", where=f"{path}:{line}"
        )
    return value


def _boolean(path: Path, line: int, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise InputError(f"@optional must be true or false, got {value!r}", where=f"{path}:{line}")
    return lowered == "true"
