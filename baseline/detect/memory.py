"""The long memory: per (host, name, path), the days it used the network.

`usage_memory` keeps, for every binary on every host, the first bucket of each of the
latest `MEMORY_DAYS` UTC days on which it had a connection (baseline/detect/schedule.py
encodes them: 8 hex digits per day), for `[detect] memory` (400 days by default) —
where presence and its aggregates end with `history`. Schedules are read from it
(weekly, monthly, quarterly). Folded with presence, in the same transaction: days in
order are appended in SQL; a day that arrives late (data older than the latest day
remembered) is merged in Python, which is rare.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from rarenet.baseline.detect.schedule import DAY, MEMORY_DAYS, RECORD, decode, encode

_KEPT = MEMORY_DAYS * RECORD


def remember_days(conn: sqlite3.Connection, span: int) -> None:
    """Fold `temp.new_presence` (the fold's new presence rows) into `usage_memory`."""
    conn.execute("DROP TABLE IF EXISTS temp.new_days")
    conn.execute(
        "CREATE TEMP TABLE new_days AS SELECT host, name, path, min(bucket) AS first "
        "FROM temp.new_presence GROUP BY host, name, path, bucket / :day",
        {"day": DAY},
    )
    late = conn.execute(
        "SELECT m.host, m.name, m.path, n.first FROM temp.new_days AS n "
        "JOIN usage_memory AS m ON m.span = :span AND m.host = n.host AND m.name = n.name "
        "AND m.path = n.path WHERE n.first / :day < m.last_time / :day "
        "OR (n.first / :day = m.last_time / :day AND n.first < m.last_time)",
        {"span": span, "day": DAY},
    ).fetchall()
    conn.execute(
        "INSERT INTO usage_memory (span, host, name, path, last_time, days) "
        "SELECT :span, host, name, path, first, printf('%08x', first / 60) "
        "FROM temp.new_days ORDER BY first "
        "ON CONFLICT (span, host, name, path) DO UPDATE SET "
        "days = substr(days || excluded.days, -:kept), last_time = excluded.last_time "
        "WHERE excluded.last_time / :day > last_time / :day",
        {"span": span, "day": DAY, "kept": _KEPT},
    )
    _merge_late(conn, span, late)
    conn.execute("DROP TABLE temp.new_days")


def _merge_late(conn: sqlite3.Connection, span: int, late: list[Any]) -> None:
    """Merge days older than the latest remembered one (late data) into their rows."""
    merged: dict[tuple[str, str, str], list[int]] = {}
    for host, name, path, first in late:
        merged.setdefault((host, name, path), []).append(int(first))
    for (host, name, path), times in merged.items():
        (days,) = conn.execute(
            "SELECT days FROM usage_memory WHERE span = ? AND host = ? AND name = ? AND path = ?",
            (span, host, name, path),
        ).fetchone()
        text = encode(decode(days) + times)
        conn.execute(
            "UPDATE usage_memory SET days = ?, last_time = ? "
            "WHERE span = ? AND host = ? AND name = ? AND path = ?",
            (text, decode(text)[-1], span, host, name, path),
        )


def remembered(
    conn: sqlite3.Connection, span: int, asks: Sequence[Sequence[str]]
) -> list[str | None]:
    """The stored days of each (host, name, path) asked, None where nothing is kept."""
    out: list[str | None] = []
    for host, name, path in asks:
        row = conn.execute(
            "SELECT days FROM usage_memory WHERE span = ? AND host = ? AND name = ? AND path = ?",
            (span, host, name, path),
        ).fetchone()
        out.append(None if row is None else str(row[0]))
    return out


def forget_before(conn: sqlite3.Connection, span: int, before: int) -> int:
    """Drop the memory of binaries not used on a host since `before` (`[detect] memory`)."""
    return int(
        conn.execute(
            "DELETE FROM usage_memory WHERE span = ? AND last_time < ?", (span, before)
        ).rowcount
    )
