"""A time limit on the SQL one piece of work runs (a shard's answer to one question):
past it, the statement that is running is stopped by SQLite's progress handler and the
next one is refused, and the work ends with `TookTooLong` (its transaction rolled back
by the caller's `with`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHECK_EVERY = 10_000  # SQLite virtual-machine steps between two looks at the clock


class TookTooLong(Exception):
    """The work ran past its time limit and was stopped."""


class TimedConnection(sqlite3.Connection):
    """A connection that refuses new statements once its deadline (if any) has passed:
    the bound on work made of many short statements, which the progress handler (per
    statement) cannot see."""

    ends: float | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        """As sqlite3.Connection.execute; TookTooLong once the deadline has passed."""
        if self.ends is not None and time.monotonic() > self.ends:
            raise TookTooLong("its time limit passed")
        return super().execute(sql, parameters)


@contextmanager
def deadline(conn: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Stop the work on `conn` `seconds` after entering: the running statement is
    interrupted and (on a TimedConnection) no new one starts; raise TookTooLong."""
    ends = time.monotonic() + seconds
    conn.set_progress_handler(lambda: int(time.monotonic() > ends), CHECK_EVERY)
    if isinstance(conn, TimedConnection):
        conn.ends = ends
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc) and time.monotonic() > ends:
            raise TookTooLong(f"stopped after {seconds:g} s") from None
        raise
    except TookTooLong:
        raise TookTooLong(f"stopped after {seconds:g} s") from None
    finally:
        conn.set_progress_handler(None, 0)
        if isinstance(conn, TimedConnection):
            conn.ends = None
