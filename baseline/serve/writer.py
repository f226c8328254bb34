"""One writer thread with group commit: the only path from HTTP bodies to the store.

Requests hand their parsed chunk to `submit` and wait on the returned future. The
writer takes every chunk waiting at that moment (up to `max_rows`), stores them in one
transaction (`synchronous=FULL`: a commit survives power loss, not only a crash), and
resolves each future with that chunk's own counts only after COMMIT returned. So a 200
always means "durably stored", and concurrent posts share one fsync.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from rarenet.baseline.ingest.chunks import ChunkCounts, ChunkResult
from rarenet.baseline.store import Store
from rarenet.baseline.store.health import HealthRecord

MAX_GROUP_ROWS = 50_000  # rows committed in one transaction, at most


class WriterClosed(RuntimeError):
    """The server is shutting down and takes no more bodies."""


@dataclass
class _Job:
    source: str
    result: ChunkResult
    future: Future[ChunkCounts] = field(default_factory=Future)


class CommitWriter:
    """A thread owning a durable Store connection; commits queued chunks in groups."""

    def __init__(
        self,
        path: str,
        max_rows: int = MAX_GROUP_ROWS,
        gate: threading.Lock | None = None,
        health: HealthRecord | None = None,
    ) -> None:
        self.path = path
        self.health = health or HealthRecord()
        self.max_rows = max_rows
        self.gate = gate or threading.Lock()  # held around each commit (see Jobs.write_gate)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rarenet-writer", daemon=True)
        self.commits = 0  # transactions committed (for tests and metrics)
        self.error: BaseException | None = None  # why the thread stopped, if it failed

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, source: str, result: ChunkResult) -> Future[ChunkCounts]:
        """Queue a parsed chunk; the future resolves to its counts after the commit."""
        job = _Job(source, result)
        with self._lock:
            if self._closed or not self._thread.is_alive():
                job.future.set_exception(WriterClosed("the server is shutting down"))
                return job.future
            self._queue.put(job)
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Commit everything already queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            store = Store(self.path, durable=True, autocheckpoint=False)
        except BaseException as exc:
            self.error = exc
            self.health.failed("write", exc)
            self._fail_pending(exc)
            return
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                group, stopping = self._gather(first)
                self._commit(store, group)
        finally:
            store.close()
            self._fail_pending(WriterClosed("the server is shutting down"))

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` and every job queued behind it, up to max_rows; True if told to stop."""
        group = [first]
        rows = len(first.result.observations)
        while rows < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return group, True
            group.append(job)
            rows += len(job.result.observations)
        return group, False

    def _commit(self, store: Store, group: list[_Job]) -> None:
        try:
            with self.gate, store.transaction():
                for job in group:
                    commit_chunk_in(store, job.source, job.result)
        except Exception as exc:  # the store failed: every waiting request learns it
            self.health.failed("write", exc)
            for job in group:
                job.future.set_exception(exc)
            return
        self.health.succeeded("write")
        self.commits += 1
        for job in group:
            job.future.set_result(job.result.counts())

    def _fail_pending(self, exc: BaseException) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and not job.future.done():
                job.future.set_exception(exc)


def commit_chunk_in(store: Store, source: str, result: ChunkResult) -> None:
    """What `chunks.commit_chunk` writes, inside a transaction the caller already holds
    (several requests' chunks share one transaction here)."""
    result.inserted = store.insert_observations(result.observations)
    result.quarantined = store.quarantine_rejects(source, result.rejects, result.dropped)


__all__ = ["CommitWriter", "WriterClosed", "commit_chunk_in"]
