"""Parse-and-commit chunks in worker processes, so ingest uses every core.

Each worker has its own store connection and commits its chunk's observations and
quarantined lines in one transaction. The caller advances a file's checkpoint only
over the contiguous prefix of chunks whose commits have been acknowledged, so after
a crash a re-run re-reads at most the chunks in flight; their rows are absorbed by the
(time, digest) identity and nothing is stored twice.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult, Pool
from typing import BinaryIO, cast

from rarenet.baseline.config import Config
from rarenet.baseline.errors import InputError
from rarenet.baseline.ingest.chunks import (
    ChunkCounts,
    ChunkResult,
    build_parser,
    commit_chunk,
    parse_lines,
)
from rarenet.baseline.ingest.parser import Parser
from rarenet.baseline.ingest.reader import Chunk, LimitedReader, read_chunks

_worker_state: dict[str, object] = {}


@dataclass(frozen=True)
class LinesJob:
    """Lines read by the parent (stdin, gzip): parse and commit them."""

    source: str
    lines: list[tuple[int, bytes, int]]


@dataclass(frozen=True)
class RangeJob:
    """A byte range of whole lines of a plain file: the worker reads it itself, so the
    parent only finds range boundaries and never copies line data between processes."""

    source: str
    path: str  # /proc/<parent>/fd/<n>: the parent's open descriptor of the file
    device: int
    inode: int
    start: int
    end: int
    first_line: int


Job = LinesJob | RangeJob


def default_workers() -> int:
    """Worker processes to use: the CPUs this process may run on, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def _init_worker(db_path: str, config: Config) -> None:
    from rarenet.baseline.store import Store

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _worker_state["store"] = Store(db_path)
    _worker_state["parser"] = build_parser(config)
    _worker_state["max_line"] = config.ingest.max_body


def _work(job: Job) -> ChunkCounts:
    from rarenet.baseline.store import Store

    store = _worker_state["store"]
    parser = _worker_state["parser"]
    max_line = _worker_state["max_line"]
    assert isinstance(store, Store) and isinstance(parser, Parser) and isinstance(max_line, int)
    if isinstance(job, LinesJob):
        result = parse_lines(parser, job.lines, max_line)
    else:
        result = _parse_range(parser, job, max_line)
    commit_chunk(store, job.source, result)
    return result.counts()


def _parse_range(parser: Parser, job: RangeJob, max_line: int) -> ChunkResult:
    with open(job.path, "rb") as handle:
        info = os.fstat(handle.fileno())
        if (info.st_dev, info.st_ino) != (job.device, job.inode):
            raise InputError("the file changed while it was being read; run ingest again")
        handle.seek(job.start)
        stream = cast(BinaryIO, LimitedReader(handle, job.end - job.start))
        lines: list[tuple[int, bytes, int]] = []
        for chunk in read_chunks(
            stream,
            start_offset=job.start,
            start_line=job.first_line,
            max_line=max_line,
            can_grow=False,
            chunk_lines=1 << 30,
        ):
            lines.extend(chunk.lines)
    return parse_lines(parser, lines, max_line)


class WorkerPool:
    """A pool of parse-and-commit workers bound to one store and configuration."""

    def __init__(self, db_path: str, config: Config, workers: int):
        context = multiprocessing.get_context("fork")
        self.workers = workers
        self._pool: Pool = context.Pool(workers, _init_worker, (db_path, config))

    def run(
        self,
        jobs: Iterable[tuple[Chunk, Job]],
        on_done: Callable[[Chunk, ChunkCounts], None],
    ) -> None:
        """Commit every job; call `on_done` with its chunk (end offset and line) in input
        order as each commit is acknowledged."""
        window: deque[tuple[Chunk, AsyncResult[ChunkCounts]]] = deque()
        limit = self.workers * 2
        for chunk, job in jobs:
            window.append((chunk, self._pool.apply_async(_work, (job,))))
            while len(window) >= limit:
                self._finish_oldest(window, on_done)
        while window:
            self._finish_oldest(window, on_done)

    @staticmethod
    def _finish_oldest(
        window: deque[tuple[Chunk, AsyncResult[ChunkCounts]]],
        on_done: Callable[[Chunk, ChunkCounts], None],
    ) -> None:
        chunk, pending = window.popleft()
        on_done(chunk, pending.get())

    def close(self) -> None:
        """Let workers finish and exit."""
        self._pool.close()
        self._pool.join()

    def terminate(self) -> None:
        """Stop workers now; uncommitted transactions roll back."""
        self._pool.terminate()
        self._pool.join()
