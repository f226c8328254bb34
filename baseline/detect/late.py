"""Late data: every host-bucket is scored when its data arrives, whenever that is.

The presence fold queues each host-bucket it adds data to (`pending_host_bucket`, with
the fold's observation watermark as `version`). A run of the rule scores its look-back
as always; host-buckets older than the look-back that wait in the queue are its
*backlog*: an offline laptop's buffered results, a stream consumed after an outage, a
backfill. The run first catches up on the backlog, oldest bucket first, one bucket per
step: each step is scored and decided as the live run right after that bucket would
have been (against the baseline before it in data time, with the signals of the steps
before it), and commits its signals with its part of the queue, so an interrupted
catch-up resumes where it stopped and never raises a signal twice (ids are
deterministic). A run scores at most `catch_up` host-buckets of backlog; the rest waits
for the next run, which says how far behind it is. Host-buckets older than `history`
are never scored: they are counted per host (`too_late`) and shown on Health.

A signal carries both times: its bucket's data time and when rarenet could first see it
(`arrival.seen`: the data time of the run that scored it; `arrival.lag_seconds`: how long
after the bucket ended).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from rarenet.baseline.units import format_time

LATE_AFTER = 3600  # seconds after its bucket ended beyond which data is called late


@dataclass(frozen=True)
class Backlog:
    """What waits to be scored behind a run's look-back: host-buckets per bucket."""

    buckets: list[tuple[int, int]] = field(default_factory=list)  # (bucket, host-buckets)

    @property
    def host_buckets(self) -> int:
        return sum(count for _, count in self.buckets)

    @property
    def oldest(self) -> int | None:
        return self.buckets[0][0] if self.buckets else None

    def plan(self, budget: int) -> tuple[list[int], Backlog]:
        """The buckets this run catches up on (oldest first, at least one, until the
        budget of host-buckets is spent) and what is left for later runs."""
        taken: list[int] = []
        spent = 0
        for bucket, count in self.buckets:
            if taken and spent + count > budget:
                break
            taken.append(bucket)
            spent += count
        return taken, Backlog(self.buckets[len(taken) :])

    @classmethod
    def merged(cls, parts: list[list[Any]]) -> Backlog:
        """Summed over shards."""
        total: dict[int, int] = {}
        for rows in parts:
            for bucket, count in rows:
                total[int(bucket)] = total.get(int(bucket), 0) + int(count)
        return cls(sorted(total.items()))


@dataclass(frozen=True)
class Arrival:
    """When rarenet could first see a signal's data: the data time of the run that
    scored it, and how long after its bucket ended that was."""

    seen: int
    lag: int

    @classmethod
    def of(cls, bucket: int, span: int, seen: int) -> Arrival:
        return cls(seen, max(0, seen - (bucket + span)))

    def as_json(self) -> dict[str, Any]:
        return {"seen": format_time(self.seen), "lag_seconds": self.lag}


def remember_pending(conn: sqlite3.Connection, span: int, version: int) -> None:
    """Inside the fold: queue every host-bucket of `temp.new_presence` for scoring."""
    conn.execute(
        "INSERT INTO pending_host_bucket (span, bucket, host, version) "
        "SELECT DISTINCT :span, bucket, host, :version FROM temp.new_presence WHERE true "
        "ON CONFLICT (span, bucket, host) DO UPDATE SET version = excluded.version",
        {"span": span, "version": version},
    )


def backlog(conn: sqlite3.Connection, span: int, low: int, high: int, mark: int) -> list[Any]:
    """Queued host-buckets per bucket in [low, high), folded by `mark`."""
    return [
        [int(bucket), int(count)]
        for bucket, count in conn.execute(
            "SELECT bucket, count(*) FROM pending_host_bucket WHERE span = ? AND bucket >= ? "
            "AND bucket < ? AND version <= ? GROUP BY bucket ORDER BY bucket",
            (span, low, high, mark),
        )
    ]


def pending_candidates(conn: sqlite3.Connection, span: int, bucket: int, mark: int) -> list[Any]:
    """Presence rows of the queued hosts of one bucket, in candidate order."""
    return [
        tuple(row)
        for row in conn.execute(
            "SELECT p.bucket, p.host, p.name, p.path, p.first_id FROM pending_host_bucket AS q "
            "JOIN presence AS p ON p.span = q.span AND p.bucket = q.bucket AND p.host = q.host "
            "WHERE q.span = ? AND q.bucket = ? AND q.version <= ? "
            "ORDER BY p.bucket, p.host, p.name, p.path",
            (span, bucket, mark),
        )
    ]


def settle(conn: sqlite3.Connection, span: int, low: int, high: int, mark: int) -> int:
    """Forget the queued host-buckets in [low, high) a run scored (folded by `mark`:
    data folded since waits for the next run)."""
    return conn.execute(
        "DELETE FROM pending_host_bucket WHERE span = ? AND bucket >= ? AND bucket < ? "
        "AND version <= ?",
        (span, low, high, mark),
    ).rowcount


def has_pending_before(conn: sqlite3.Connection, span: int, before: int) -> bool:
    """Whether any queued host-bucket is older than `before`."""
    row = conn.execute(
        "SELECT 1 FROM pending_host_bucket WHERE span = ? AND bucket < ? LIMIT 1", (span, before)
    ).fetchone()
    return row is not None


def drop_too_old(conn: sqlite3.Connection, span: int, before: int, run_at: int) -> int:
    """Queued host-buckets older than `before` (the baseline window): never scored,
    counted per host in `too_late` and taken off the queue. Returns how many."""
    rows = conn.execute(
        "SELECT host, count(*), max(bucket) FROM pending_host_bucket WHERE span = ? "
        "AND bucket < ? GROUP BY host",
        (span, before),
    ).fetchall()
    for host, count, newest in rows:
        conn.execute(
            "INSERT INTO too_late (span, host, host_buckets, newest_bucket, last_run_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (span, host) DO UPDATE SET "
            "host_buckets = host_buckets + excluded.host_buckets, "
            "newest_bucket = max(newest_bucket, excluded.newest_bucket), "
            "last_run_at = excluded.last_run_at",
            (span, host, count, newest, run_at),
        )
    conn.execute("DELETE FROM pending_host_bucket WHERE span = ? AND bucket < ?", (span, before))
    return sum(int(count) for _, count, _ in rows)
