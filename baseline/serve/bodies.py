"""Request bodies of `POST /v1/ingest` → a parsed chunk, with the existing parser.

A body is NDJSON (one result document per line), one JSON array, or one Fleet webhook
body (`{"timestamp", "details": [...]}`), detected from its content; it may be gzip
(or zlib) compressed, by `Content-Encoding` or by its magic bytes. Decompression is
incremental and stops at `max_body` bytes of output, so a small gzip bomb costs no more
memory than an honest body of the limit.
"""

from __future__ import annotations

import marshal
import os
import signal
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import orjson

from rarenet.baseline.config import Config
from rarenet.baseline.ingest.chunks import MAX_REJECTS_KEPT, ChunkResult, build_parser, parse_lines
from rarenet.baseline.ingest.model import Observation, Reject
from rarenet.baseline.ingest.parser import LineResult, Parser
from rarenet.baseline.ingest.reader import is_json

GZIP_MAGIC = b"\x1f\x8b"
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
MAX_ERRORS = 20  # reasons listed in a response
_PIECE = 1 << 20  # decompressed bytes produced per step


class BodyError(Exception):
    """A body that cannot be used at all: the HTTP status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)  # both in args: it crosses process boundaries
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ParsedBody:
    """A body's rows and rejects (ready for `commit_chunk`) and the reasons to report."""

    result: ChunkResult
    errors: list[dict[str, Any]]  # the first MAX_ERRORS {line, reason}
    lines: int  # body lines (1 for a single document)

    @property
    def nothing_usable(self) -> bool:
        """Only errors: no row was even recognised (the 400 case)."""
        r = self.result
        return bool(r.rejects or r.dropped) and not (r.observations or r.filtered or r.skipped)


def decode(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body's bytes, decompressed if it is gzip/zlib (header or magic bytes)."""
    encoding = encoding.strip().lower()
    if encoding not in ENCODINGS:
        raise BodyError(415, f"Content-Encoding {encoding[:40]!r} is not supported (use gzip)")
    if encoding in ("", "identity") and not raw.startswith(GZIP_MAGIC):
        return raw
    return inflate(raw, limit)


def inflate(raw: bytes, limit: int) -> bytes:
    """Decompress gzip (several members allowed) or zlib data, at most `limit` bytes out."""
    out: list[bytes] = []
    size = 0
    data = raw
    while data:
        inflater = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, auto-detected
        try:
            while data and not inflater.eof:
                piece = inflater.decompress(data, _PIECE)
                size += len(piece)
                if size > limit:
                    raise BodyError(
                        413,
                        f"body is over the {limit}-byte limit once decompressed ([ingest] max_body)",
                    )
                out.append(piece)
                data = inflater.unconsumed_tail
        except zlib.error as exc:
            raise BodyError(400, f"body is not valid gzip: {exc}") from None
        if not inflater.eof:
            raise BodyError(400, "gzip body is truncated")
        data = inflater.unused_data.lstrip(b"\0")  # next member; padding tolerated
    return b"".join(out)


def parse_body(parser: Parser, body: bytes, limit: int) -> ParsedBody:
    """Rows and rejects of a body; raises BodyError(400) for an empty one."""
    text = body.strip()
    if not text:
        raise BodyError(400, "empty body: send NDJSON, a JSON array or a Fleet webhook body")
    newline = text.find(b"\n")
    if newline == -1:  # one line: one document (Fleet's compact body), parsed once
        return _single(parser, text, limit, None)
    if not is_json(text[:newline].strip()):  # not NDJSON: a pretty-printed document?
        whole = _document(text)
        if whole is not None:
            return _single(parser, text, limit, whole)
    result = parse_lines(parser, _numbered_lines(body), limit)
    errors = [{"line": r.line, "reason": r.reason} for r in result.rejects[:MAX_ERRORS]]
    return ParsedBody(result, errors, body.count(b"\n") + 1)


def _numbered_lines(body: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(number, stripped line, 0) for each non-blank line, one at a time: a body of
    millions of tiny lines is never held as millions of objects."""
    start, number, size = 0, 0, len(body)
    while start <= size:
        end = body.find(b"\n", start)
        if end == -1:
            end = size
        number += 1
        line = body[start:end].strip()
        if line:
            yield number, line, 0
        start = end + 1


def _document(text: bytes) -> Any:
    """The body as one JSON document (lossy UTF-8 if needed), or None."""
    for attempt in (text, None):
        try:
            if attempt is None:
                return orjson.loads(text.decode("utf-8", "replace"))
            return orjson.loads(attempt)
        except orjson.JSONDecodeError:
            continue
    return None


def _single(parser: Parser, text: bytes, limit: int, document: Any) -> ParsedBody:
    """One document: parsed whole (the fast path); if it had errors and is a Fleet body
    or an array, parsed again item by item so each bad item is quarantined on its own
    and named (`details[17]: …`)."""
    result = parse_lines(parser, [(1, text, 0)], limit)
    if result.rejects:
        if document is None:
            document = _document(text)
        items, label = _items(document)
        if items is not None:
            result = _itemised(parser, items, label)
    errors = [{"line": r.line, "reason": r.reason} for r in result.rejects[:MAX_ERRORS]]
    return ParsedBody(result, errors, 1)


def _items(document: Any) -> tuple[list[Any] | None, str]:
    if isinstance(document, dict) and isinstance(document.get("details"), list):
        return document["details"], "details"
    if isinstance(document, list):
        return document, ""
    return None, ""


def _itemised(parser: Parser, items: list[Any], label: str) -> ChunkResult:
    totals = LineResult()
    rejects: list[Reject] = []
    dropped = 0
    for index, item in enumerate(items):
        raw = orjson.dumps(item)
        errors = parser.parse_into(raw, totals)
        if errors:
            if len(rejects) >= MAX_REJECTS_KEPT:
                dropped += 1
                continue
            reason = f"{label}[{index}]: {errors[0]}"
            if len(errors) > 1:
                reason += f" (and {len(errors) - 1} more)"
            rejects.append(Reject(1, reason, raw, len(raw)))
    return ChunkResult(totals.observations, rejects, totals.filtered, totals.skipped, 0, dropped)


# -- in parse worker processes ----------------------------------------------------------
#
# Parsing is pure Python (GIL-bound), so `rarenet serve` parses bodies in a small pool
# of processes and keeps its own process for HTTP and the commit. Observations travel
# back as marshalled plain tuples (an Observation's field order is the column order):
# several times cheaper to unpack than pickled NamedTuples.

_worker: tuple[Parser, int] | None = None


@dataclass(frozen=True)
class PackedBody:
    """A ParsedBody on its way back from a worker."""

    rows: bytes  # marshal of a list of observation tuples
    rejects: list[Reject]
    filtered: int
    skipped: int
    errors: list[dict[str, Any]]
    lines: int
    dropped: int = 0

    def unpack(self) -> ParsedBody:
        observations = cast(list[Observation], marshal.loads(self.rows))
        result = ChunkResult(
            observations, self.rejects, self.filtered, self.skipped, 0, self.dropped
        )
        return ParsedBody(result, self.errors, self.lines)


def init_child(server: int) -> None:
    """Initializer of every child process of the server (parse workers, the detection
    child). Signals are the server's business: a Ctrl-C (sent to the whole process
    group) or systemd's SIGTERM (sent to the whole control group) must not kill a child
    in the middle of work the server promised to finish; the server stops its children
    itself, and a child whose server died (SIGKILL, OOM) exits on its own. `server` is
    the server's pid, passed in: a server killed while this child was still starting
    would otherwise leave it watching init (its new parent) forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(server,), daemon=True).start()


def init_worker(config: Config, server: int) -> None:
    """Pool initializer: one parser per worker (and `init_child`)."""
    global _worker
    init_child(server)
    _worker = (build_parser(config), config.ingest.max_body)


def _exit_with(parent: int) -> None:
    """A server killed outright (SIGKILL) cannot stop its workers: they notice and go."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def worker_ready(pause: float) -> int:
    """A no-op that keeps a worker busy for `pause` seconds (to start them all early)."""
    time.sleep(pause)
    return os.getpid()


def parse_in_worker(raw: bytes, encoding: str) -> PackedBody:
    """Decode and parse one request body in a worker (raises BodyError)."""
    assert _worker is not None, "init_worker was not run"
    parser, limit = _worker
    parsed = parse_body(parser, decode(raw, encoding, limit), limit)
    r = parsed.result
    rows = marshal.dumps([tuple(o) for o in r.observations])
    return PackedBody(
        rows, r.rejects, r.filtered, r.skipped, parsed.errors, parsed.lines, r.dropped
    )
