"""Output files: reproducible gzip, and writing in a thread while generation goes on."""

from __future__ import annotations

import gzip
import queue
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

GZIP_LEVEL = 1  # fast (~7x smaller than plain); compressing is done in the writer thread
QUEUE_DEPTH = 4  # chunks waiting to be written, at most


class Writable(Protocol):
    """Anything with a binary `write` (a file, a gzip stream, a socket file)."""

    def write(self, data: bytes, /) -> object: ...


def open_output(stack: ExitStack, path: Path, gz: bool) -> Writable:
    """A binary file for writing; gzip-compressed without name or mtime (reproducible) if `gz`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = stack.enter_context(path.open("wb"))
    if not gz:
        return raw
    zipped = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL)
    return stack.enter_context(zipped)


class BackgroundWriter:
    """Writes to `target` in a thread, so disk I/O and zlib (which release the GIL)
    overlap with generating the next chunk. Errors surface on the next write or close."""

    def __init__(self, target: Writable) -> None:
        self._target = target
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rarenet-simulate-writer")
        self._thread.daemon = True
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._target.write(data)
                except BaseException as exc:  # handed to the producer
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> int:
        """Queue `data` (blocks while QUEUE_DEPTH chunks are pending)."""
        self._check()
        self._queue.put(data)
        return len(data)

    def close(self) -> None:
        """Wait until everything is written (the target stays open)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._check()
