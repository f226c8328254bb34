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

from rarenet.baseline.config import Config
from rarenet.baseline.errors import InputError
from rarenet.baseline.ingest.chunks import ChunkCounts, build_parser, commit_chunk, parse_lines
from rarenet.baseline.ingest.reader import (
    Chunk,
    FileIdentity,
    OpenFile,
    pending_bytes,
    plan_ranges,
    read_chunks,
    stdin_stream,
)
from rarenet.baseline.ingest.sniff import not_a_result_log
from rarenet.baseline.ingest.workers import Job, LinesJob, RangeJob, WorkerPool
from rarenet.baseline.store import Checkpoint, Store

STDIN = "-"
PARALLEL_MIN_BYTES = 8 << 20  # below this, worker start-up costs more than it saves
RANGE_BYTES = 4 << 20  # bytes of a plain file one worker reads, parses and commits at once
GZIP_BLOCK = 64 << 10  # small decompression reads: a corrupt stream loses little


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
        # Workers open the store themselves: an in-memory store cannot be shared.
        self.workers = workers if store.path != ":memory:" else 1
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
        with OpenFile(path) as opened:
            self._finish_rotated(path, opened.identity)
            offset, line = self._resume_point(opened)
            self._read_file(opened, offset, line)

    def _resume_point(self, opened: OpenFile) -> tuple[int, int]:
        """Where to continue: the checkpoint if it still describes this file (same head,
        not shorter, same bytes just before the offset); else the start."""
        identity = opened.identity
        saved = self.store.checkpoint(identity.device, identity.inode)
        if saved is None or not _same_file(identity.fingerprint, saved.fingerprint):
            return 0, 0
        if not opened.compressed and (
            identity.size < saved.offset or opened.tail(saved.offset) != saved.tail
        ):
            return 0, 0  # truncated (and maybe regrown) in place: read it again
        return saved.offset, saved.line

    def _read_file(self, opened: OpenFile, offset: int, line: int) -> None:
        self.report.files += 1
        identity = opened.identity
        source = str(opened.path.resolve())
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
                    opened.tail(chunk.end_offset),
                )
            )
            if self.progress:
                self.progress(chunk.end_offset - mark.offset)
            mark.offset, mark.line = chunk.end_offset, chunk.end_line

        parallel = self.workers > 1 and identity.size - offset >= PARALLEL_MIN_BYTES
        if offset == 0:  # a new file: named once if it is no result log at all
            problem = not_a_result_log(opened.stream_at(0))
            if problem is not None:
                raise InputError(problem, where=str(opened.path))
        try:
            if parallel and not opened.compressed:
                self._commit_ranges(opened, source, mark, committed)
            chunks = read_chunks(
                opened.stream_at(mark.offset),
                start_offset=mark.offset,
                start_line=mark.line,
                max_line=self.max_line,
                can_grow=not opened.compressed,
                block_size=GZIP_BLOCK if opened.compressed else None,
            )
            self._commit_all(chunks, source, parallel, committed, first_line=mark.line)
        except InputError as exc:
            raise InputError(exc.message, where=str(opened.path), hint=exc.hint) from None
        if not opened.compressed:
            self.report.pending_bytes += pending_bytes(opened, mark.offset)

    def _commit_ranges(
        self, opened: OpenFile, source: str, mark: _Mark, on_done: Callable[[Chunk], None]
    ) -> None:
        """Hand whole-line byte ranges of a plain file to the workers, which read them
        through this process's open descriptor (the very file, even if renamed since);
        the unfinished tail (if any) is left for the caller."""
        identity = opened.identity
        with open(opened.shared_path(), "rb") as stream:
            stream.seek(mark.offset)
            ranges = plan_ranges(
                stream, start_offset=mark.offset, start_line=mark.line, target=RANGE_BYTES
            )
            jobs = (
                (
                    Chunk([], piece.end, piece.end_line),
                    RangeJob(
                        source,
                        opened.shared_path(),
                        identity.device,
                        identity.inode,
                        piece.start,
                        piece.end,
                        piece.first_line,
                    ),
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
        last run, read the rest of the renamed file first, from its checkpoint.
        (Only the newest rotation is followed; pass older generations explicitly.)"""
        for saved in self.store.checkpoints_for_path(str(path.resolve())):
            if (saved.device, saved.inode) == (current.device, current.inode):
                return
            renamed = _find_by_inode(path.parent, saved.device, saved.inode)
            if renamed is None:
                return
            with OpenFile(renamed) as opened:
                if (opened.identity.device, opened.identity.inode) != (saved.device, saved.inode):
                    return
                offset, line = self._resume_point(opened)
                if (offset, line) != (0, 0) or saved.offset == 0:
                    self._read_file(opened, offset, line)
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
