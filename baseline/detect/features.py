"""Gather scoring inputs for the candidates of a window from presence and its aggregates.

Every count is over the baseline window [bucket - history, bucket) of each candidate's
own bucket, so a bucket's score never depends on the run that scored it. Counts that
only matter up to a saturation point are capped in SQL (LIMIT/OFFSET probes), so a run
reads a bounded number of rows per candidate however long the history is.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from baseline.detect.presence import host_activity_sql, hosts_in_window
from baseline.detect.scoring import MIN_ROUTINE_HOSTS, ROUTINE_SHARE, Features, key_rarity
from baseline.store import Store

HOST_PATH_CAP = 12  # familiarity 1 - exp(-12/4) = 0.95: more buckets change little
# Time scales follow `history` (14 days by default), so compressed drills behave alike:
ESTABLISHED_SHARE = 1 / 14  # a path seen in the fleet this long (1 day) is established
MATURE_SHARE = 3 / 14  # a host with this much activity (3 days) has a history of its own


@dataclass(frozen=True)
class Candidate:
    """A host using a binary in a bucket of the look-back window."""

    bucket: int
    host: str
    name: str
    path: str
    first_id: int  # the first observation of it in that bucket (for details)


@dataclass(frozen=True)
class FleetContext:
    """Fleet-wide numbers for one scored bucket."""

    bucket: int
    host_buckets: int  # F
    hosts: int  # N: peak hosts active in one bucket
    buckets: int  # buckets of fleet history (warm-up)
    first_bucket: int | None  # oldest bucket of history in the window


@dataclass(frozen=True)
class Gathered:
    """Candidates, their features (same order) and per-bucket fleet context."""

    candidates: list[Candidate]
    features: Features
    fleet: dict[int, FleetContext]
    name_first_bucket: list[int | None]
    path_first_bucket: list[int | None]
    path_last_bucket: list[int | None]


def window_buckets(at: int, span: int, lookback: int) -> list[int]:
    """Start times of the complete buckets in [at - lookback, at)."""
    end = (at // span) * span
    count = max(1, lookback // span)
    return [end - span * i for i in range(count, 0, -1)]


def gather(store: Store, span: int, history: int, buckets: list[int], warmup: int) -> Gathered:
    """Features of every (host, name, path) present in `buckets`."""
    conn = store.conn
    rows = conn.execute(
        "SELECT bucket, host, name, path, first_id FROM presence WHERE span = ? AND bucket >= ? "
        "AND bucket <= ? ORDER BY bucket, host, name, path",
        (span, buckets[0], buckets[-1]),
    ).fetchall()
    candidates = [Candidate(*row) for row in rows]
    fleet = {b: _fleet_context(conn, span, history, b, warmup) for b in buckets}
    _load_candidates(conn, candidates)
    key_stats = _key_stats(conn, span, history, fleet)
    day = max(span, int(history * ESTABLISHED_SHARE))
    mature = max(1, int(history * MATURE_SHARE) // span)
    recent: dict[tuple[str, str, int], int] = {}
    n = len(candidates)
    arrays = {name: np.zeros(n) for name in _FEATURE_NAMES}
    path_first: list[int | None] = []
    name_first: list[int | None] = []
    path_last: list[int | None] = []
    for i, cand in enumerate(candidates):
        context = fleet[cand.bucket]
        arrays["fleet_host_buckets"][i] = context.host_buckets
        arrays["fleet_hosts"][i] = context.hosts
        name_f, name_h, name_first_b, _ = key_stats[("name", cand.name, cand.bucket)]
        arrays["name_host_buckets"][i], arrays["name_hosts"][i] = name_f, name_h
        name_first.append(name_first_b)
        if cand.path:
            path_f, path_h, first_b, last_b = key_stats[("path", cand.path, cand.bucket)]
            arrays["path_host_buckets"][i], arrays["path_hosts"][i] = path_f, path_h
            path_first.append(first_b)
            path_last.append(last_b)
        else:
            arrays["path_host_buckets"][i] = arrays["path_hosts"][i] = math.nan
            first_b = name_first_b
            path_first.append(None)
            path_last.append(None)
        age = cand.bucket - first_b if first_b is not None else 0
        arrays["established"][i] = min(1.0, age / day)
        if age < day:  # spread only matters for a young key
            kind, key = ("path", cand.path) if cand.path else ("name", cand.name)
            if (kind, key, cand.bucket) not in recent:
                recent[(kind, key, cand.bucket)] = _recent_hosts(
                    conn, span, kind, key, cand.bucket, day, _routine_cap(context)
                )
            arrays["recent_hosts"][i] = recent[(kind, key, cand.bucket)]
        else:
            arrays["recent_hosts"][i] = 1
    _mark_rare(conn, arrays)
    for i, (host_path, active) in enumerate(_pair_stats(conn, span, history, mature)):
        arrays["host_path_buckets"][i] = host_path
        arrays["host_maturity"][i] = min(1.0, active / mature)
    conn.execute("DROP TABLE IF EXISTS temp.candidates")
    return Gathered(candidates, Features(**arrays), fleet, name_first, path_first, path_last)


_FEATURE_NAMES = (
    "fleet_host_buckets",
    "fleet_hosts",
    "path_host_buckets",
    "path_hosts",
    "name_host_buckets",
    "name_hosts",
    "host_path_buckets",
    "host_maturity",
    "established",
    "recent_hosts",
)


def _fleet_context(
    conn: sqlite3.Connection, span: int, history: int, bucket: int, warmup: int
) -> FleetContext:
    total, peak, count, first = conn.execute(
        "SELECT coalesce(sum(hosts), 0), coalesce(max(hosts), 0), count(*), min(bucket) "
        "FROM fleet_bucket WHERE span = ? AND bucket >= ? AND bucket < ?",
        (span, bucket - history, bucket),
    ).fetchone()
    return FleetContext(bucket, int(total), int(peak), int(count), first)


def _load_candidates(conn: sqlite3.Connection, candidates: list[Candidate]) -> None:
    conn.execute("DROP TABLE IF EXISTS temp.candidates")
    conn.execute(
        "CREATE TEMP TABLE candidates (id INTEGER PRIMARY KEY, bucket INTEGER, host TEXT, "
        "name TEXT, path TEXT, rare INTEGER NOT NULL DEFAULT 0)"
    )
    conn.executemany(
        "INSERT INTO temp.candidates (id, bucket, host, name, path) VALUES (?, ?, ?, ?, ?)",
        [(i, c.bucket, c.host, c.name, c.path) for i, c in enumerate(candidates)],
    )


def _mark_rare(conn: sqlite3.Connection, arrays: dict[str, npt.NDArray[np.float64]]) -> None:
    """Flag candidates whose path or name is rare in the fleet (R > 0). Only for those
    does this host's own use need counting (familiarity); for routine keys the score can
    only come from novelty, which needs just "has this host used it before"."""
    fleet_f, fleet_n = arrays["fleet_host_buckets"], arrays["fleet_hosts"]
    by_name = key_rarity(arrays["name_host_buckets"], arrays["name_hosts"], fleet_f, fleet_n)
    known = ~np.isnan(arrays["path_host_buckets"])
    by_path = key_rarity(
        np.nan_to_num(arrays["path_host_buckets"]),
        np.nan_to_num(arrays["path_hosts"]),
        fleet_f,
        fleet_n,
    )
    rare = np.flatnonzero((by_name > 0) | (known & (by_path > 0)))
    conn.executemany("UPDATE temp.candidates SET rare = 1 WHERE id = ?", [(int(i),) for i in rare])


def _key_stats(
    conn: sqlite3.Connection, span: int, history: int, fleet: dict[int, FleetContext]
) -> dict[tuple[str, str, int], tuple[int, int, int | None, int | None]]:
    """(kind, key, bucket) → (host-buckets, hosts capped at the routine share, first
    bucket seen, last bucket seen) over each bucket's baseline window."""
    keys = conn.execute(
        "SELECT DISTINCT 'name', name, bucket FROM temp.candidates UNION "
        "SELECT DISTINCT 'path', path, bucket FROM temp.candidates WHERE path != ''"
    ).fetchall()
    stats: dict[tuple[str, str, int], tuple[int, int, int | None, int | None]] = {}
    for kind, key, bucket in keys:
        low = bucket - history
        host_buckets, first, last = conn.execute(
            "SELECT coalesce(sum(hosts), 0), min(bucket), max(bucket) FROM key_bucket "
            "WHERE span = ? AND kind = ? AND key = ? AND bucket >= ? AND bucket < ?",
            (span, kind, key, low, bucket),
        ).fetchone()
        cap = _routine_cap(fleet[bucket])
        hosts = hosts_in_window(conn, span, kind, key, low, bucket, cap) if host_buckets else 0
        stats[(kind, key, bucket)] = (int(host_buckets), int(hosts), first, last)
    return stats


def _routine_cap(context: FleetContext) -> int:
    """Hosts beyond which a key is routine (counting further changes no score)."""
    return math.ceil(max(ROUTINE_SHARE * context.hosts, MIN_ROUTINE_HOSTS))


def _pair_stats(
    conn: sqlite3.Connection, span: int, history: int, mature: int
) -> list[tuple[int, int]]:
    """Per candidate: this host's buckets with this binary (by path, or by name when the
    path is unknown; counted up to 12 for rare keys, up to 1 for routine ones) and the
    host's active buckets up to `mature`. Host activity is two seeks on `host_bucket.seq`
    per (host, bucket); two passes keep every binary probe on an index."""
    window = "{a}.bucket >= c.bucket - :history AND {a}.bucket < c.bucket"
    params = {"span": span, "history": history}
    active_sql = host_activity_sql("c.host", "c.bucket", "c.bucket - :history")
    active = {
        (host, bucket): int(count)
        for host, bucket, count in conn.execute(
            f"SELECT c.host, c.bucket, {active_sql} FROM "
            "(SELECT DISTINCT host, bucket FROM temp.candidates) AS c",
            params,
        )
    }
    stats: dict[int, tuple[int, int]] = {}
    for column, only in (("path", "c.path != ''"), ("name", "c.path = ''")):
        where = f"p.span = :span AND p.host = c.host AND p.{column} = c.{column} AND " + (
            window.format(a="p")
        )
        used = (
            f"CASE WHEN c.rare THEN {_capped_count('presence', 'p', where, HOST_PATH_CAP)} "
            f"ELSE EXISTS (SELECT 1 FROM presence AS p WHERE {where}) END"
        )
        for cid, host, bucket, host_buckets in conn.execute(
            f"SELECT c.id, c.host, c.bucket, {used} FROM temp.candidates AS c WHERE {only}",
            params,
        ):
            stats[int(cid)] = (int(host_buckets), min(active[(host, bucket)], mature))
    return [stats[i] for i in range(len(stats))]


def _capped_count(table: str, alias: str, where: str, cap: int) -> str:
    """SQL for min(count of matching rows, cap): one probe at offset cap-1 decides
    saturation; only below the cap are rows counted (fewer than cap of them)."""
    probe = f"SELECT 1 FROM {table} AS {alias} WHERE {where} LIMIT 1 OFFSET {cap - 1}"
    return (
        f"CASE WHEN ({probe}) IS NOT NULL THEN {cap} "
        f"ELSE (SELECT count(*) FROM {table} AS {alias} WHERE {where}) END"
    )


def _recent_hosts(
    conn: sqlite3.Connection, span: int, kind: str, key: str, bucket: int, day: int, cap: int
) -> int:
    """Distinct hosts using a young key within the last `day`, this bucket included, up
    to `cap` (only asked for keys first seen less than a `day` ago)."""
    return hosts_in_window(conn, span, kind, key, bucket - day, bucket + span, cap)
