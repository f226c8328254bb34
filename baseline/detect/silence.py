"""Health for silence: how late data arrives, what waits to be scored, what came too
late, and which hosts stopped reporting — an attacker who stops osquery is the next
thing an admin wants to know (docs/operations.md "Monitoring").

Everything is in data time, from the store alone, so it reads the same live and in a
replay: arrival lags are those the runs recorded (`runs.arrivals`: how long after its
bucket ended each host-bucket was first scored), a silent host is one active in most
buckets of the day before the fleet's newest hour and in none of that hour.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import orjson

HOUR, DAY = 3600, 86400
REGULAR_SHARE = 0.5  # of the day's buckets: a host this active is expected to report
STALLED_RUNS = 4  # runs in a row with the same oldest waiting bucket: catch-up stalled
SILENT_SHOWN = 50  # hosts listed by name (all are counted)


@dataclass(frozen=True)
class SilentHost:
    host: str
    last_bucket: int  # the start of its newest bucket with data
    active_share: float  # of the day's buckets before the newest hour


@dataclass(frozen=True)
class TooLate:
    host: str
    host_buckets: int
    newest_bucket: int


@dataclass(frozen=True)
class Arrivals:
    """Data time's view of delivery: lag percentiles over the newest hour of runs, the
    catch-up queue, too-late data per host and silent hosts."""

    lag_p50: int | None = None  # seconds after its bucket ended a host-bucket was scored
    lag_p99: int | None = None
    scored_last_hour: int = 0  # host-buckets first scored by runs in the newest hour
    behind: int = 0  # host-buckets waiting after the newest run
    behind_since: int | None = None
    stalled: bool = False  # the oldest waiting bucket has not moved for STALLED_RUNS runs
    too_late: tuple[TooLate, ...] = ()
    silent: tuple[SilentHost, ...] = ()
    silent_count: int = 0
    newest_bucket: int | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def too_late_total(self) -> int:
        return sum(entry.host_buckets for entry in self.too_late)


def arrivals(conn: sqlite3.Connection, span: int) -> Arrivals:
    """The store's arrival health now (see the module docstring)."""
    newest_run = conn.execute("SELECT max(data_time) FROM runs WHERE catch_up = 0").fetchone()[0]
    p50 = p99 = None
    scored = 0
    if newest_run is not None:
        lags: dict[int, int] = {}
        for (raw,) in conn.execute(
            "SELECT arrivals FROM runs WHERE data_time > ?", (int(newest_run) - HOUR,)
        ):
            for lag, count in orjson.loads(raw):
                lags[int(lag)] = lags.get(int(lag), 0) + int(count)
        scored = sum(lags.values())
        p50, p99 = _quantile(lags, 0.5), _quantile(lags, 0.99)
    behind, since, stalled = catch_up(conn)
    too_late = tuple(
        TooLate(str(host), int(count), int(newest))
        for host, count, newest in conn.execute(
            "SELECT host, host_buckets, newest_bucket FROM too_late WHERE span = ? "
            "ORDER BY host_buckets DESC, host LIMIT 100",
            (span,),
        )
    )
    newest, silent, silent_count = _silent(conn, span)
    problems = [stalled_sentence(behind)] if stalled else []
    return Arrivals(
        p50,
        p99,
        scored,
        behind,
        since,
        stalled,
        too_late,
        silent,
        silent_count,
        newest,
        tuple(problems),
    )


def catch_up(conn: sqlite3.Connection) -> tuple[int, int | None, bool]:
    """After the newest run: host-buckets still queued, the oldest queued bucket, and
    whether that bucket has not moved for STALLED_RUNS runs (a stalled catch-up)."""
    recent = conn.execute(
        "SELECT behind, behind_since FROM runs WHERE catch_up = 0 ORDER BY id DESC LIMIT ?",
        (STALLED_RUNS,),
    ).fetchall()
    behind, since = (int(recent[0][0]), recent[0][1]) if recent else (0, None)
    stalled = len(recent) == STALLED_RUNS and all(
        waiting > 0 and oldest == since for waiting, oldest in recent
    )
    return behind, None if since is None else int(since), stalled


def stalled_sentence(behind: int) -> str:
    """What Health says of a stalled catch-up."""
    return (
        f"catch-up stalled: {behind:,} host-buckets of late data have waited since the "
        f"same bucket for {STALLED_RUNS} runs"
    )


def _quantile(counts: dict[int, int], share: float) -> int | None:
    """The smallest value at or below which `share` of the weighted values lie."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= share * total:
            return value
    return max(counts)


def _silent(conn: sqlite3.Connection, span: int) -> tuple[int | None, tuple[SilentHost, ...], int]:
    """Hosts active in at least half the buckets of the day before the fleet's newest
    hour, and in none of that hour (`host_last` keeps each host's newest bucket, so only
    the recently quiet ones are counted bucket by bucket)."""
    row = conn.execute("SELECT max(bucket) FROM fleet_bucket WHERE span = ?", (span,)).fetchone()
    if row is None or row[0] is None:
        return None, (), 0
    newest = int(row[0])
    quiet_from = newest + span - HOUR  # no data in [quiet_from, newest + span)
    day_from = quiet_from - DAY
    expected = max(1, (DAY // span))
    found = []
    for host, last in conn.execute(
        "SELECT host, last_bucket FROM host_last WHERE span = ? AND last_bucket < ? "
        "AND last_bucket >= ? ORDER BY last_bucket, host",
        (span, quiet_from, day_from),
    ):
        active = conn.execute(
            "SELECT count(*) FROM host_bucket WHERE span = ? AND host = ? AND bucket >= ? "
            "AND bucket < ?",
            (span, host, day_from, quiet_from),
        ).fetchone()[0]
        share = int(active) / expected
        if share >= REGULAR_SHARE:
            found.append(SilentHost(str(host), int(last), share))
    return newest, tuple(found[:SILENT_SHOWN]), len(found)
