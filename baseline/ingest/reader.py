"""Read result-log lines from files (plain or gzip) and stdin, in checkpointable chunks.

A chunk is a list of complete lines and the byte offset (in the decompressed stream)
just past them, so a checkpoint saved with a chunk's observations resumes exactly
after it. Lines longer than `max_line` are cut off and reported as oversize rather
than buffered. A final line without a newline waits for its newline unless it is
already a complete JSON document (or the stream is stdin/gzip, which cannot grow).
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

import orjson

from baseline.errors import InputError

BLOCK_SIZE = 1 << 20
CHUNK_LINES = 4096
FINGERPRINT_SIZE = 256
GZIP_MAGIC = b"\x1f\x8b"


class Line(NamedTuple):
    """One input line and its 1-based number; `oversize` holds its real length if cut."""

    number: int
    data: bytes
    oversize: int = 0


@dataclass(frozen=True)
class Chunk:
    """Complete lines and the stream offset just after the last of them."""

    lines: list[Line]
    end_offset: int
    end_line: int


@dataclass(frozen=True)
class FileIdentity:
    """Device, inode and the first bytes of a file: how rotation and truncation are seen."""

    device: int
    inode: int
    size: int
    fingerprint: bytes


def identify(path: Path) -> FileIdentity:
    """Stat and fingerprint a readable regular file; InputError otherwise."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError("no such file", where=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(
            "is a directory", where=str(path), hint=f"pass the files inside it, e.g. {path}/*.log"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(FINGERPRINT_SIZE)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
    return FileIdentity(info.st_dev, info.st_ino, info.st_size, head)


def is_gzip(head: bytes) -> bool:
    """True when the bytes start like a gzip stream."""
    return head.startswith(GZIP_MAGIC)


def open_stream(path: Path, head: bytes, offset: int) -> tuple[BinaryIO, bool]:
    """Open a file positioned at decompressed `offset`; returns (stream, can_grow)."""
    if is_gzip(head):
        stream: BinaryIO = gzip.open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115 (returned)
        remaining = offset
        while remaining > 0:
            skipped = len(stream.read(min(remaining, BLOCK_SIZE)))
            if skipped == 0:
                break
            remaining -= skipped
        return stream, False
    stream = path.open("rb")
    stream.seek(offset)
    return stream, True


def stdin_stream() -> BinaryIO:
    """Standard input as bytes, transparently gunzipped if it starts like gzip."""
    raw: Any = sys.stdin.buffer
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw)
    head = raw.peek(2)[:2]
    if is_gzip(head):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return cast(BinaryIO, raw)


def read_chunks(
    stream: BinaryIO,
    *,
    start_offset: int = 0,
    start_line: int = 0,
    max_line: int,
    can_grow: bool,
    chunk_lines: int | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of complete lines from `stream` (already positioned at start_offset)."""
    chunk_lines = chunk_lines or CHUNK_LINES
    offset, number = start_offset, start_line
    partial, partial_len = b"", 0  # an unfinished line: its first bytes and its true length
    lines: list[Line] = []
    while True:
        try:
            block = stream.read(BLOCK_SIZE)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"read failed after line {number}: {exc}") from None
        if not block:
            break
        parts = block.split(b"\n")
        last = parts.pop()
        for part in parts:
            if partial_len:
                part_len = partial_len + len(part)
                part = (partial + part)[: max_line + 1]
                partial, partial_len = b"", 0
            else:
                part_len = len(part)
            number += 1
            offset += part_len + 1
            if part_len > max_line:
                lines.append(Line(number, part[:max_line], part_len))
            elif part and not part.isspace():
                lines.append(Line(number, part))
            if len(lines) >= chunk_lines:
                yield Chunk(lines, offset, number)
                lines = []
        if last:
            if len(partial) <= max_line:
                partial = (partial + last)[: max_line + 1]
            partial_len += len(last)
    if partial_len and (partial_len > max_line or not can_grow or _complete_json(partial)):
        number += 1
        offset += partial_len
        oversize = partial_len if partial_len > max_line else 0
        if oversize or not partial.isspace():
            lines.append(Line(number, partial[:max_line], oversize))
    if lines or offset != start_offset:
        yield Chunk(lines, offset, number)


class ByteRange(NamedTuple):
    """Whole lines of a plain file: bytes [start, end) hold lines first_line+1 … end_line."""

    start: int
    end: int
    first_line: int
    end_line: int


def plan_ranges(
    stream: BinaryIO, *, start_offset: int, start_line: int, target: int
) -> Iterator[ByteRange]:
    """Cut a plain file (positioned at start_offset) into ranges of about `target` bytes
    that end just after a newline, counting lines without splitting them. Whatever follows
    the last newline (an unfinished line) is left for `read_chunks`."""
    position, line = start_offset, start_line
    range_start, range_line = start_offset, start_line
    last_cut, last_cut_line = start_offset, start_line
    while block := stream.read(BLOCK_SIZE):
        newline = block.rfind(b"\n")
        if newline >= 0:
            line += block.count(b"\n")
            last_cut, last_cut_line = position + newline + 1, line
            if last_cut - range_start >= target:
                yield ByteRange(range_start, last_cut, range_line, last_cut_line)
                range_start, range_line = last_cut, last_cut_line
        position += len(block)
    if last_cut > range_start:
        yield ByteRange(range_start, last_cut, range_line, last_cut_line)


class LimitedReader:
    """At most `length` bytes of a binary stream, as a stream."""

    def __init__(self, stream: BinaryIO, length: int):
        self._stream = stream
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        wanted = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(wanted)
        self._left -= len(data)
        return data


def _complete_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def pending_bytes(path: Path, offset: int) -> int:
    """Bytes of a plain file beyond `offset` (an unfinished last line)."""
    try:
        return max(0, os.path.getsize(path) - offset)
    except OSError:
        return 0
