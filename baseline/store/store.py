"""Open, migrate and write the SQLite store.

Writes go through `transaction()` (BEGIN IMMEDIATE … COMMIT): a batch of observations
and the checkpoint that covers it commit together, so an interrupted ingest resumes
exactly where its last commit ended and never double-counts.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from rarenet.baseline.errors import StoreError
from rarenet.baseline.ingest.model import OBSERVATION_COLUMNS, Observation, Reject
from rarenet.baseline.store.deadline import TimedConnection
from rarenet.baseline.store.health import (
    RECOVER_HINT,
    SMALL_TABLES,
    describe_failure,
    is_corrupt,
    quick_check,
    quick_check_tables,
)
from rarenet.baseline.store.migrations import migrate

QUARANTINE_RAW_LIMIT = 64 * 1024  # bytes of a rejected line kept for inspection
QUARANTINE_PER_SOURCE = 10_000  # rows kept per source (file or http:peer) within retention

_INSERT_OBSERVATIONS = (
    f"INSERT OR IGNORE INTO observations ({', '.join(OBSERVATION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(OBSERVATION_COLUMNS))})"
)


@dataclass(frozen=True)
class Checkpoint:
    """How far a file (identified by device + inode + head fingerprint) has been read."""

    device: int
    inode: int
    path: str
    fingerprint: bytes
    offset: int
    line: int
    tail: bytes = b""  # the bytes just before `offset` (plain files)


def contains(text: str) -> str:
    """A LIKE pattern (with `ESCAPE '\\'`) matching `text` anywhere, its own % and _
    taken literally: a search box's query."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class StoreSummary:
    """What the store holds, for `rarenet status`."""

    path: str
    observations: int
    hosts: int
    names: int
    paths: int
    first_time: int | None
    last_time: int | None
    quarantined: int
    quarantine_dropped: int  # rejected lines counted but not kept (over a cap)
    files: int
    schema: list[str]
    signals: int = 0
    unacknowledged: int = 0  # signals nobody acknowledged in the console
    fleet_buckets: dict[int, int] = field(default_factory=dict)  # bucket span → buckets
    last_run: dict[str, Any] | None = None  # the newest detection run


class Store:
    """A rarenet SQLite database (WAL mode), migrated to the current schema on open."""

    def __init__(self, path: str | Path, *, durable: bool = False, autocheckpoint: bool = True):
        """Open (and migrate) the store. `durable`: synchronous=FULL. `autocheckpoint`
        False leaves WAL checkpoints to the caller (`wal_checkpoint()`), so a long-running
        service keeps them off its request path."""
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.conn: sqlite3.Connection = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, factory=TimedConnection
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL survives process crashes (kill -9) in WAL mode; FULL also
            # survives power loss and is used where a commit is acknowledged to a sender.
            self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.conn.execute("PRAGMA cache_size=-65536")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            if not autocheckpoint:
                self.conn.execute("PRAGMA wal_autocheckpoint=0")
            migrate(self.conn)
        except sqlite3.DatabaseError as exc:
            if is_corrupt(exc):
                raise StoreError(
                    f"cannot open the store: it is corrupt or not a database ({exc})",
                    where=self.path,
                    hint="is it a rarenet SQLite file (check --db / [store] path)? If it is, "
                    + RECOVER_HINT,
                ) from None
            raise StoreError(
                f"cannot open the store: {describe_failure(exc)}",
                where=self.path,
                hint="check --db / [store] path",
            ) from None
        self.db = Database(self.conn)

    def check(self, limit: int = 5) -> list[str]:
        """Problems `PRAGMA quick_check` finds in the file ([] when it is sound)."""
        return quick_check(self.conn, limit)

    def check_small_tables(self) -> list[str]:
        """`check` of the small tables only (schema, state, signals): milliseconds."""
        return quick_check_tables(self.conn, SMALL_TABLES)

    def applied_migrations(self) -> list[str]:
        """Schema steps recorded in this database."""
        return [row[0] for row in self.conn.execute("SELECT name FROM _migrations ORDER BY name")]

    def wal_checkpoint(self) -> tuple[int, int]:
        """A passive WAL checkpoint (never waits for readers or writers): (WAL frames,
        frames copied into the database)."""
        _, frames, copied = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames), int(copied)

    def close(self) -> None:
        """Close the connection (WAL content stays durable)."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: everything inside commits together or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- observations -------------------------------------------------------------------

    def insert_observations(self, rows: Sequence[Observation]) -> int:
        """Insert rows, ignoring those already stored; return how many were new."""
        before = self.conn.total_changes
        self.conn.executemany(_INSERT_OBSERVATIONS, rows)
        return self.conn.total_changes - before

    def prune_observations(self, older_than: int) -> int:
        """Delete observations with data time before `older_than`; return how many."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM observations WHERE time < ?", (older_than,)).rowcount

    # -- quarantine ---------------------------------------------------------------------

    def quarantine(
        self, source: str, line: int, reason: str, raw: bytes, size: int | None = None
    ) -> None:
        """Keep a rejected input line (its first 64 KiB) with where it came from, why,
        and its real size (`size`, when `raw` was already cut)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO quarantine "
            "(received_at, source, line, reason, raw, raw_size, raw_digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                int(time.time()),
                source,
                line,
                reason,
                raw[:QUARANTINE_RAW_LIMIT],
                size if size is not None else len(raw),
                hashlib.blake2b(raw, digest_size=16).digest(),
            ),
        )

    def quarantine_rejects(self, source: str, rejects: Sequence[Reject], dropped: int = 0) -> int:
        """Keep `rejects` from `source` up to QUARANTINE_PER_SOURCE rows for it; count the
        rest (and `dropped`, rejects already not kept upstream) in `quarantine_overflow`.
        Call inside the batch's transaction. Returns how many rows were kept."""
        room = QUARANTINE_PER_SOURCE
        if rejects:
            held = self.conn.execute(
                "SELECT count(*) FROM quarantine WHERE source = ?", (source,)
            ).fetchone()[0]
            room = max(0, QUARANTINE_PER_SOURCE - int(held))
        kept = rejects[:room]
        for reject in kept:
            self.quarantine(source, reject.line, reject.reason, reject.raw, reject.size)
        over = dropped + len(rejects) - len(kept)
        if over:
            self.conn.execute(
                "INSERT INTO quarantine_overflow (source, dropped, last_at) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO UPDATE SET dropped = dropped + excluded.dropped, "
                "last_at = excluded.last_at",
                (source, over, int(time.time())),
            )
        return len(kept)

    def prune_quarantine(self, older_than: int) -> int:
        """Delete quarantined lines (and overflow counts) received before `older_than`."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM quarantine_overflow WHERE last_at < ?", (older_than,))
            return conn.execute(
                "DELETE FROM quarantine WHERE received_at < ?", (older_than,)
            ).rowcount

    # -- file checkpoints ---------------------------------------------------------------

    def checkpoint(self, device: int, inode: int) -> Checkpoint | None:
        """The checkpoint of the file with this identity, if it was read before."""
        row = self.conn.execute(
            "SELECT device, inode, path, fingerprint, offset, line, tail FROM checkpoints "
            "WHERE device = ? AND inode = ?",
            (device, inode),
        ).fetchone()
        return Checkpoint(*row) if row else None

    def checkpoints_for_path(self, path: str) -> list[Checkpoint]:
        """Checkpoints last recorded under `path`, newest first (rotation lookup)."""
        rows = self.conn.execute(
            "SELECT device, inode, path, fingerprint, offset, line, tail FROM checkpoints "
            "WHERE path = ? ORDER BY updated_at DESC",
            (path,),
        ).fetchall()
        return [Checkpoint(*row) for row in rows]

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Record how far a file has been read (call inside the batch's transaction)."""
        self.conn.execute(
            "INSERT INTO checkpoints (device, inode, path, fingerprint, offset, line, tail, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, inode) DO UPDATE "
            "SET path = excluded.path, fingerprint = excluded.fingerprint, "
            "offset = excluded.offset, line = excluded.line, tail = excluded.tail, "
            "updated_at = excluded.updated_at",
            (
                checkpoint.device,
                checkpoint.inode,
                checkpoint.path,
                checkpoint.fingerprint,
                checkpoint.offset,
                checkpoint.line,
                checkpoint.tail,
                time.time_ns(),
            ),
        )

    # -- reporting ----------------------------------------------------------------------

    def summary(self) -> StoreSummary:
        """Counts and time range of what is stored."""

        def scalar(sql: str) -> int:
            value = self.conn.execute(sql).fetchone()[0]
            return int(value or 0)

        first, last = self.conn.execute("SELECT min(time), max(time) FROM observations").fetchone()
        return StoreSummary(
            path=self.path,
            observations=scalar("SELECT count(*) FROM observations"),
            hosts=scalar("SELECT count(DISTINCT host) FROM observations"),
            names=scalar("SELECT count(DISTINCT name) FROM observations"),
            paths=scalar("SELECT count(DISTINCT path) FROM observations"),
            first_time=first,
            last_time=last,
            quarantined=scalar("SELECT count(*) FROM quarantine"),
            quarantine_dropped=scalar("SELECT sum(dropped) FROM quarantine_overflow"),
            files=scalar("SELECT count(*) FROM checkpoints"),
            schema=self.applied_migrations(),
            signals=scalar("SELECT count(*) FROM signals"),
            unacknowledged=scalar(
                "SELECT count(*) FROM signals WHERE id NOT IN (SELECT signal_id FROM signal_acks)"
            ),
            fleet_buckets={
                int(span): int(count)
                for span, count in self.conn.execute(
                    "SELECT span, count(*) FROM fleet_bucket GROUP BY span"
                )
            },
            last_run=self._last_run(),
        )

    def _last_run(self) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT id, started_at, data_time, status, signals, error FROM runs "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "started_at", "data_time", "status", "signals", "error")
        return dict(zip(keys, row, strict=True))
