"""The ingest loop: sources → chunks → parsed observations → one transaction per chunk.

Each chunk's observations and quarantined lines commit together; a file's checkpoint
advances only past chunks already committed. A kill at any moment therefore leaves
the store at chunk boundaries, a re-run resumes from the checkpoint, and the
(time, digest) identity absorbs anything read twice: nothing is lost or doubled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from baseline.config import Config
from baseline.errors import InputError
from baseline.ingest.chunks import ChunkCounts, build_parser, commit_chunk, parse_lines
from baseline.ingest.reader import (
    Chunk,
    FileIdentity,
    identify,
    is_gzip,
    open_stream,
    pending_bytes,
    plan_ranges,
    read_chunks,
    stdin_stream,
)
from baseline.ingest.workers import Job, LinesJob, RangeJob, WorkerPool
from baseline.store import Checkpoint, Store

STDIN = "-"
PARALLEL_MIN_BYTES = 8 << 20  # below this, worker start-up costs more than it saves
RANGE_BYTES = 4 << 20  # bytes of a plain file one worker reads, parses and commits at once


@dataclass
class _Mark:
    """How far a file has been committed: byte offset and line number."""

    offset: int
    line: int


@dataclass
class IngestReport:
    """Totals of one ingest; `as_json` is the `ingest --json` document."""

    lines: int = 0
    observations: int = 0  # newly stored
    duplicates: int = 0  # already stored (same line read twice, overlapping posts)
    rejected: int = 0  # lines quarantined
    filtered: int = 0  # rows deliberately not kept (loopback, unix sockets, excluded…)
    skipped: int = 0  # rows of other queries and `removed` rows
    pending_bytes: int = 0  # unfinished last lines waiting for their newline
    seconds: float = 0.0
    files: int = 0
    errors: list[str] = field(default_factory=list)  # inputs that could not be read

    def add(self, counts: ChunkCounts) -> None:
        self.observations += counts.inserted
        self.duplicates += counts.duplicates
        self.rejected += counts.rejected
        self.filtered += counts.filtered
        self.skipped += counts.skipped

    @property
    def rows_per_second(self) -> float:
        rows = self.observations + self.duplicates
        return rows / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "observations": self.observations,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "filtered": self.filtered,
            "skipped": self.skipped,
            "pending_bytes": self.pending_bytes,
            "files": self.files,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }


class Ingester:
    """Ingests files and streams into one store with one configuration.

    `workers` > 1 parses and commits large inputs in that many processes.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        workers: int = 1,
        progress: Callable[[int], None] | None = None,
    ):
        self.store = store
        self.config = config
        self.parser = build_parser(config)
        self.max_line = config.ingest.max_body
        self.workers = workers
        self.progress = progress
        self.report = IngestReport()
        self._pool: WorkerPool | None = None

    def ingest(self, sources: Iterable[str]) -> IngestReport:
        """Ingest every source (`-` is stdin); unreadable ones are listed in `errors`."""
        started = time.perf_counter()
        try:
            for source in sources:
                try:
                    if source == STDIN:
                        self._stream(stdin_stream())
                    else:
                        self._file(Path(source))
                except InputError as exc:
                    self.report.errors.append(str(exc))
        except BaseException:
            if self._pool:
                self._pool.terminate()
                self._pool = None
            raise
        finally:
            if self._pool:
                self._pool.close()
            self.report.seconds = time.perf_counter() - started
        return self.report

    def _stream(self, stream: BinaryIO) -> None:
        self.report.files += 1
        chunks = read_chunks(stream, max_line=self.max_line, can_grow=False)
        self._commit_all(chunks, STDIN, self.workers > 1, None)

    def _file(self, path: Path) -> None:
        identity = identify(path)
        self._finish_rotated(path, identity)
        saved = self.store.checkpoint(identity.device, identity.inode)
        offset = line = 0
        # A smaller file than the checkpoint was truncated in place: start over.
        if (
            saved
            and _same_file(identity.fingerprint, saved.fingerprint)
            and identity.size >= saved.offset
        ):
            offset, line = saved.offset, saved.line
        self._read_file(path, identity, offset, line)

    def _read_file(self, path: Path, identity: FileIdentity, offset: int, line: int) -> None:
        self.report.files += 1
        source = str(path.resolve())
        mark = _Mark(offset, line)

        def committed(chunk: Chunk) -> None:
            self.store.save_checkpoint(
                Checkpoint(
                    identity.device,
                    identity.inode,
                    source,
                    identity.fingerprint,
                    chunk.end_offset,
                    chunk.end_line,
                )
            )
            if self.progress:
                self.progress(chunk.end_offset - mark.offset)
            mark.offset, mark.line = chunk.end_offset, chunk.end_line

        parallel = self.workers > 1 and identity.size - offset >= PARALLEL_MIN_BYTES
        if parallel and not is_gzip(identity.fingerprint):
            self._commit_ranges(path, source, mark, committed)
        stream, can_grow = open_stream(path, identity.fingerprint, mark.offset)
        with stream:
            chunks = read_chunks(
                stream,
                start_offset=mark.offset,
                start_line=mark.line,
                max_line=self.max_line,
                can_grow=can_grow,
            )
            self._commit_all(chunks, source, parallel, committed, first_line=mark.line)
        if can_grow:
            self.report.pending_bytes += pending_bytes(path, mark.offset)

    def _commit_ranges(
        self, path: Path, source: str, mark: _Mark, on_done: Callable[[Chunk], None]
    ) -> None:
        """Hand whole-line byte ranges of a plain file to the workers, which read them
        themselves; the unfinished tail (if any) is left for the caller."""
        with path.open("rb") as stream:
            stream.seek(mark.offset)
            ranges = plan_ranges(
                stream, start_offset=mark.offset, start_line=mark.line, target=RANGE_BYTES
            )
            jobs = (
                (
                    Chunk([], piece.end, piece.end_line),
                    RangeJob(source, str(path), piece.start, piece.end, piece.first_line),
                )
                for piece in ranges
            )
            self._run_parallel(jobs, on_done, first_line=mark.line)

    def _commit_all(
        self,
        chunks: Iterable[Chunk],
        source: str,
        parallel: bool,
        on_done: Callable[[Chunk], None] | None,
        first_line: int = 0,
    ) -> None:
        """Commit every chunk read by this process; count lines; call `on_done` in order
        (inside the chunk's own transaction when committing here)."""
        if parallel:
            jobs = (
                (chunk, LinesJob(source, [(n, data, cut) for n, data, cut in chunk.lines]))
                for chunk in chunks
            )
            self._run_parallel(jobs, on_done, first_line=first_line)
            return
        previous = first_line
        for chunk in chunks:
            result = parse_lines(self.parser, chunk.lines, self.max_line)
            commit_chunk(self.store, source, result, _bind(on_done, chunk))
            self.report.add(result.counts())
            self.report.lines += chunk.end_line - previous
            previous = chunk.end_line

    def _run_parallel(
        self,
        jobs: Iterable[tuple[Chunk, Job]],
        on_done: Callable[[Chunk], None] | None,
        first_line: int,
    ) -> None:
        """Run jobs on the worker pool; as each commit is acknowledged (in input order),
        count it and record its checkpoint in a transaction of our own."""
        if self._pool is None:
            self._pool = WorkerPool(self.store.path, self.config, self.workers)
        previous = first_line

        def done(chunk: Chunk, counts: ChunkCounts) -> None:
            nonlocal previous
            self.report.add(counts)
            self.report.lines += chunk.end_line - previous
            previous = chunk.end_line
            if on_done:
                with self.store.transaction():
                    on_done(chunk)

        self._pool.run(jobs, done)

    def _finish_rotated(self, path: Path, current: FileIdentity) -> None:
        """If `path` was rotated (renamed away, a new file in its place) since the
        last run, read the rest of the renamed file first, from its checkpoint."""
        for saved in self.store.checkpoints_for_path(str(path.resolve())):
            if (saved.device, saved.inode) == (current.device, current.inode):
                return
            renamed = _find_by_inode(path.parent, saved.device, saved.inode)
            if renamed is None:
                return
            try:
                identity = identify(renamed)
            except InputError:
                return
            if _same_file(identity.fingerprint, saved.fingerprint):
                self._read_file(renamed, identity, saved.offset, saved.line)
            return


def _bind(action: Callable[[Chunk], None] | None, chunk: Chunk) -> Callable[[], None] | None:
    return (lambda: action(chunk)) if action else None


def _same_file(current: bytes, saved: bytes) -> bool:
    """Same head bytes as when checkpointed (the file may have grown since)."""
    shorter = min(len(current), len(saved))
    return current[:shorter] == saved[:shorter] and len(current) >= len(saved)


def _find_by_inode(directory: Path, device: int, inode: int) -> Path | None:
    try:
        for entry in directory.iterdir():
            try:
                info = entry.stat()
            except OSError:
                continue
            if info.st_ino == inode and info.st_dev == device:
                return entry
    except OSError:
        return None
    return None


__all__ = ["STDIN", "IngestReport", "Ingester"]
