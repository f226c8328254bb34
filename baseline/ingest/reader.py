"""Read result-log lines from files (plain or gzip) and stdin, in checkpointable chunks.

A chunk is a list of complete lines and the byte offset (in the decompressed stream)
just past them, so a checkpoint saved with a chunk's observations resumes exactly
after it. Lines longer than `max_line` are cut off and reported as oversize rather
than buffered. A final line without a newline waits for its newline unless it is
already a complete JSON document (or the stream is stdin/gzip, which cannot grow).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

import orjson

from rarenet.baseline.errors import InputError

BLOCK_SIZE = 1 << 20
CHUNK_LINES = 4096
FINGERPRINT_SIZE = 256
TAIL_SIZE = 4096  # several result lines, timestamps included
CHUNK_BYTES = 32 << 20  # a chunk also ends once it holds this many bytes of lines
KEEP_OVERSIZE = 64 * 1024  # of a line over max_line only this much is kept (for quarantine)
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


class OpenFile:
    """A regular file opened once: its identity is taken from the open descriptor, so a
    rename or replacement after opening cannot make us read one file and checkpoint
    another. Close it (or use `with`) when done."""

    def __init__(self, path: Path):
        self.path = path
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.set_blocking(fd, True)
            self.handle: BinaryIO = os.fdopen(fd, "rb")
        except FileNotFoundError:
            raise InputError("no such file", where=str(path)) from None
        except IsADirectoryError:
            raise _directory(path) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
        try:
            info = os.fstat(self.handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise _directory(path)
            if not stat.S_ISREG(info.st_mode):
                raise InputError(
                    "is not a regular file (a pipe or device)",
                    where=str(path),
                    hint=f"stream it instead: cat {path} | rarenet ingest -",
                )
            head = os.pread(self.handle.fileno(), FINGERPRINT_SIZE, 0)
        except BaseException:
            self.handle.close()
            raise
        self.identity = FileIdentity(info.st_dev, info.st_ino, info.st_size, head)

    @property
    def compressed(self) -> bool:
        return is_gzip(self.identity.fingerprint)

    def tail(self, offset: int) -> bytes:
        """A digest of the bytes just before `offset` (plain files; b"" for gzip), which a
        checkpoint keeps to notice a file truncated and regrown past it."""
        if self.compressed or offset <= 0:
            return b""
        start = max(0, offset - TAIL_SIZE)
        data = os.pread(self.handle.fileno(), offset - start, start)
        return hashlib.blake2b(data, digest_size=16).digest()

    def stream_at(self, offset: int) -> BinaryIO:
        """A stream of the (decompressed) content from `offset`."""
        if self.compressed:
            self.handle.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=self.handle, mode="rb")  # type: ignore[assignment]
            remaining = offset
            while remaining > 0:
                skipped = len(stream.read(min(remaining, BLOCK_SIZE)))
                if skipped == 0:
                    break
                remaining -= skipped
            return stream
        self.handle.seek(offset)
        return self.handle

    def shared_path(self) -> str:
        """A path other processes can open to read this very file (even if renamed)."""
        return f"/proc/{os.getpid()}/fd/{self.handle.fileno()}"

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _directory(path: Path) -> InputError:
    return InputError(
        "is a directory", where=str(path), hint=f"pass the files inside it, e.g. {path}/*.log"
    )


def is_gzip(head: bytes) -> bool:
    """True when the bytes start like a gzip stream."""
    return head.startswith(GZIP_MAGIC)


class _Prepended:
    """`head` followed by the rest of `stream`."""

    def __init__(self, head: bytes, stream: Any):
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._stream.read(), b""
                return bytes(data)
            data, self._head = self._head[:size], self._head[size:]
            return data
        read = getattr(self._stream, "read1", None) if size >= 0 else None
        return bytes(read(size) if read else self._stream.read(size))


def stdin_stream() -> BinaryIO:
    """Standard input as bytes, transparently gunzipped if it starts like gzip."""
    raw: Any = sys.stdin.buffer
    head = raw.read(2)  # blocks until two bytes (or the end) arrive, however slowly
    stream: Any = _Prepended(head, raw)
    if is_gzip(head):
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    return cast(BinaryIO, stream)


def read_chunks(
    stream: BinaryIO,
    *,
    start_offset: int = 0,
    start_line: int = 0,
    max_line: int,
    can_grow: bool,
    chunk_lines: int | None = None,
    block_size: int | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of complete lines from `stream` (already positioned at start_offset).

    If the stream fails (a corrupt gzip), the complete lines read so far are yielded
    before the InputError is raised."""
    chunk_lines = chunk_lines or CHUNK_LINES
    block_size = block_size or BLOCK_SIZE
    offset, number = start_offset, start_line
    partial, partial_len = b"", 0  # an unfinished line: its first bytes and its true length
    lines: list[Line] = []
    held = 0  # bytes of line data in `lines`
    while True:
        try:
            block = stream.read(block_size)
        except (OSError, EOFError, zlib.error) as exc:
            if lines or offset != start_offset:  # keep every complete line read so far
                yield Chunk(lines, offset, number)
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
                lines.append(Line(number, part[:KEEP_OVERSIZE], part_len))
                held += KEEP_OVERSIZE
            elif part and not part.isspace():
                lines.append(Line(number, part))
                held += part_len
            if len(lines) >= chunk_lines or held >= CHUNK_BYTES:
                yield Chunk(lines, offset, number)
                lines, held = [], 0
        if last:
            if len(partial) <= max_line:
                partial = (partial + last)[: max_line + 1]
            partial_len += len(last)
    if partial_len and (partial_len > max_line or not can_grow or is_json(partial)):
        number += 1
        offset += partial_len
        oversize = partial_len if partial_len > max_line else 0
        if oversize or not partial.isspace():
            lines.append(Line(number, partial[: KEEP_OVERSIZE if oversize else max_line], oversize))
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


def is_json(data: bytes) -> bool:
    """Whether `data` is one whole JSON document."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def pending_bytes(opened: OpenFile, offset: int) -> int:
    """Bytes of a plain file beyond `offset` (an unfinished last line)."""
    return max(0, os.fstat(opened.handle.fileno()).st_size - offset)
