"""Is the store usable? SQLite failures in plain words, the start-up check, and the
running server's record of what last failed (for `/healthz`)."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass

from rarenet.baseline.errors import StoreError

CORRUPT_MARKERS = ("malformed", "not a database", "corrupt")
FULL_MARKERS = ("disk is full", "database or disk is full", "no space")
BUSY_MARKERS = ("locked", "busy")
RECOVER_HINT = (
    "restore it from a backup, or salvage what is readable: "
    "sqlite3 DB '.recover' | sqlite3 NEW.db (docs/operations.md)"
)


def is_corrupt(exc: BaseException) -> bool:
    """True for SQLite's "the file is damaged" errors."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError | StoreError) and any(
        m in text for m in CORRUPT_MARKERS
    )


def describe_failure(exc: BaseException) -> str:
    """A store failure as a user reads it: what happened, and what to do."""
    text = str(exc).lower()
    if is_corrupt(exc):
        return f"the store is corrupt ({exc}): {RECOVER_HINT}"
    if any(m in text for m in FULL_MARKERS):
        return f"the disk holding the store is full ({exc}): free space; nothing committed is lost"
    if any(m in text for m in BUSY_MARKERS):
        return f"the store is busy ({exc}): is another process holding it?"
    if "readonly" in text or "unable to open" in text:
        return f"the store cannot be written ({exc}): check the file's owner and permissions"
    return f"the store failed ({type(exc).__name__}: {exc})"


def quick_check(conn: sqlite3.Connection, limit: int = 5) -> list[str]:
    """`PRAGMA quick_check`: the first `limit` problems, [] when the file is sound. It
    reads every page once (no index cross-checks): 200 s for a 4.7 GB store here."""
    return _problems(conn, f"PRAGMA quick_check({int(limit)})", "")


def _problems(conn: sqlite3.Connection, pragma: str, label: str) -> list[str]:
    """The rows of a check pragma other than "ok" (prefixed `label`); a check that
    cannot even run is its own problem."""
    try:
        rows = conn.execute(pragma).fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [f"{label}{row[0]}" for row in rows if row[0] != "ok"]


def check_summary(problems: list[str]) -> str:
    """Problems a check found, in one bounded line for an error or /healthz."""
    return f"PRAGMA quick_check: {'; '.join(problems)[:300]}"


# Start-up check: a file up to this size is checked whole before serving (quick_check
# reads every page: 4.7 GB took 200 s here); a larger one has its small tables checked
# first and the whole file checked in the background, reported through /healthz.
WHOLE_CHECK_MAX_BYTES = 256 * 1024**2
SMALL_TABLES = (
    "_migrations", "store_state", "checkpoints", "quarantine", "quarantine_overflow",
    "runs", "signals", "deliveries", "exceptions", "name_path", "fleet_bucket",
)  # fmt: skip


def quick_check_tables(conn: sqlite3.Connection, tables: tuple[str, ...]) -> list[str]:
    """`PRAGMA quick_check(TABLE)` for each of `tables` that exists (and its indexes)."""
    present = {
        str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    problems: list[str] = []
    for table in tables:
        if table in present:
            problems += _problems(conn, f'PRAGMA quick_check("{table}")', f"{table}: ")
    return problems


@dataclass(frozen=True)
class Failure:
    """What failed last for one part of the server, and when (wall time)."""

    part: str  # write | read | job <name>
    reason: str
    at: float


class HealthRecord:
    """The latest failure of each part (write, read, each job); a later success of the
    same part clears it. Thread-safe: the writer, jobs and requests all report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, Failure] = {}

    def failed(self, part: str, exc: BaseException) -> Failure:
        failure = Failure(part, describe_failure(exc), time.time())
        with self._lock:
            self._failures[part] = failure
        return failure

    def problem(self, part: str, reason: str) -> Failure:
        """A part that is not failing with an error but is not doing its job (a stalled
        catch-up): `reason` as the user reads it."""
        failure = Failure(part, reason, time.time())
        with self._lock:
            self._failures[part] = failure
        return failure

    def succeeded(self, part: str) -> None:
        if part in self._failures:  # cheap read first: the common case has nothing to clear
            with self._lock:
                self._failures.pop(part, None)

    def failures(self) -> list[Failure]:
        with self._lock:
            return sorted(self._failures.values(), key=lambda f: f.part)
