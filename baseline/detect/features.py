"""Gather scoring inputs for the candidates of a window from presence and its aggregates.

Every count is over the baseline window [bucket - history, bucket) of each candidate's
own bucket, so a bucket's score never depends on the run that scored it. Counts that
only matter up to a saturation point are capped in SQL (LIMIT/OFFSET probes), so a run
reads a bounded number of rows per candidate however long the history is.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from baseline.detect.presence import (
    USED_SOURCE,
    fresh_destination_sql,
    host_activity_sql,
    hosts_in_window,
    used_where,
)
from baseline.detect.scoring import (
    MIN_ROLLOUT_HOSTS,
    MIN_ROUTINE_HOSTS,
    ROLLOUT_SHARE,
    ROUTINE_SHARE,
    Array,
    Features,
    key_rarity,
)
from baseline.shells import is_plain_shell
from baseline.store import Store
from extension.locations import package_managed, suspicion
from extension.scoring import adopting, known, mature_buckets, tenure

HOST_PATH_CAP = 12  # familiarity 1 - exp(-12/4) = 0.95: more buckets change little
# Time scales follow `history` (14 days by default), so compressed drills behave alike:
ESTABLISHED_SHARE = 1 / 14  # a path seen in the fleet this long (1 day) is established


class Candidate(NamedTuple):
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
    """Candidates, their features (same order) and per-bucket fleet context. First/last
    buckets are floats with NaN for "never seen" (explain turns them into times)."""

    candidates: list[Candidate]
    features: Features
    fleet: dict[int, FleetContext]
    name_first_bucket: Array
    path_first_bucket: Array
    path_last_bucket: Array
    warm: npt.NDArray[np.bool_]  # the candidate's bucket is past warm-up


def window_buckets(at: int, span: int, lookback: int) -> list[int]:
    """Start times of the complete buckets in [at - lookback, at)."""
    end = (at // span) * span
    count = max(1, lookback // span)
    return [end - span * i for i in range(count, 0, -1)]


def gather(store: Store, span: int, history: int, buckets: list[int], warmup: int) -> Gathered:
    """Features of every (host, name, path) present in `buckets`.

    Per-key numbers are asked once per (key, bucket) and spread to candidates with numpy
    indexing; per-candidate numbers are one SQL pass of index seeks over a temporary
    table holding only the candidates that still need one."""
    conn = store.conn
    rows = conn.execute(
        "SELECT bucket, host, name, path, first_id FROM presence WHERE span = ? AND bucket >= ? "
        "AND bucket <= ? ORDER BY bucket, host, name, path",
        (span, buckets[0], buckets[-1]),
    ).fetchall()
    candidates = list(map(Candidate._make, rows))
    fleet = {b: _fleet_context(conn, span, history, b, warmup) for b in buckets}
    keys = _key_stats(conn, span, history, fleet, rows)
    name_at, path_at, bucket_at = _positions(keys.index, buckets, rows)
    fleet_f = np.array([fleet[b].host_buckets for b in buckets], dtype=float)[bucket_at]
    fleet_n = np.array([fleet[b].hosts for b in buckets], dtype=float)[bucket_at]
    name_f, name_h, name_first = (keys.values[name_at, col] for col in range(3))
    path_f, path_h, path_first, path_last = (keys.values[path_at, col] for col in range(4))
    own = np.where(path_at >= 0, path_at, name_at)  # the key that dates the binary
    rare = _rare(name_f, name_h, path_f, path_h, fleet_f, fleet_n)
    host_path, active = _pair_stats(conn, span, history, rows, rare)
    mature = mature_buckets(history, span)
    features = Features(
        fleet_host_buckets=fleet_f,
        fleet_hosts=fleet_n,
        path_host_buckets=path_f,
        path_hosts=path_h,
        name_host_buckets=name_f,
        name_hosts=name_h,
        host_path_buckets=host_path,
        host_maturity=np.minimum(active, mature) / mature,
        established=keys.values[own, 4],
        known=keys.values[own, 9],
        tenure=np.where(path_at >= 0, keys.values[own, 7], 1.0),
        recent_hosts=keys.values[own, 5],
        wave_hosts=np.where(path_at >= 0, keys.values[own, 6], 1.0),
        package_managed=_per_path(rows, lambda p: float(package_managed(p))),
        suspicion=_per_path(rows, suspicion),
        fresh_destination=_fresh_destinations(conn, span, history, rows, active < mature),
        adopting=np.where(path_at >= 0, keys.values[own, 8], 0.0),
    )
    warm_buckets = np.array([fleet[b].buckets >= warmup for b in buckets], dtype=bool)
    return Gathered(
        candidates, features, fleet, name_first, path_first, path_last, warm_buckets[bucket_at]
    )


def _positions(
    index: dict[tuple[str, str, int], int], buckets: list[int], rows: list[Any]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Per candidate: its row of KeyStats by name and by path (-1: no path) and its
    bucket's position in the window, in one pass (100k candidates at 10k hosts)."""
    slot = {bucket: at for at, bucket in enumerate(buckets)}
    names, paths, places = [], [], []
    lookup = index.get
    for bucket, _host, name, path, _ in rows:
        names.append(index["name", name, bucket])
        paths.append(lookup(("path", path, bucket), -1))
        places.append(slot[bucket])
    return (
        np.array(names, dtype=np.intp),
        np.array(paths, dtype=np.intp),
        np.array(places, dtype=np.intp),
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


def _rare(
    name_f: Array, name_h: Array, path_f: Array, path_h: Array, fleet_f: Array, fleet_n: Array
) -> npt.NDArray[np.bool_]:
    """Candidates whose path or name is rare in the fleet (R > 0). Only for those does
    this host's own use need counting (familiarity); for routine keys the score can only
    come from novelty, which needs just "has this host used it before"."""
    by_name = key_rarity(name_f, name_h, fleet_f, fleet_n)
    known = ~np.isnan(path_f)
    by_path = key_rarity(np.nan_to_num(path_f), np.nan_to_num(path_h), fleet_f, fleet_n)
    return np.asarray((by_name > 0) | (known & (by_path > 0)))


def _per_path(rows: list[Any], value: Callable[[str], float]) -> Array:
    """`value(path)` for every candidate, computed once per distinct path."""
    cache = {path: value(path) for path in {r[3] for r in rows}}
    return np.fromiter((cache[r[3]] for r in rows), float, len(rows))


@dataclass(frozen=True)
class KeyStats:
    """Per (kind, key, bucket) of the candidates: `index` → row of `values`, whose columns
    are host-buckets, hosts, first bucket, last bucket, established, recent hosts, hosts
    in the bucket itself, tenure, adopting (a), known (k); the last row is all NaN (for a candidate without a path)."""

    index: dict[tuple[str, str, int], int]
    values: Array


def _key_stats(
    conn: sqlite3.Connection,
    span: int,
    history: int,
    fleet: dict[int, FleetContext],
    rows: list[Any],
) -> KeyStats:
    """Over each bucket's baseline window: host-buckets, hosts (capped at the routine
    share), first and last bucket seen, how established the key is and, for a young
    key, the hosts using it within the last day (spread)."""
    keys = sorted(
        {("name", r[2], r[0]) for r in rows} | {("path", r[3], r[0]) for r in rows if r[3]}
    )
    day = max(span, int(history * ESTABLISHED_SHARE))
    values = np.full((len(keys) + 1, 10), np.nan)
    for row, (kind, key, bucket) in enumerate(keys):
        low = bucket - history
        host_buckets, first, last = conn.execute(
            "SELECT coalesce(sum(hosts), 0), min(bucket), max(bucket) FROM key_bucket "
            "WHERE span = ? AND kind = ? AND key = ? AND bucket >= ? AND bucket < ?",
            (span, kind, key, low, bucket),
        ).fetchone()
        cap = routine_cap(fleet[bucket])
        hosts = hosts_in_window(conn, span, kind, key, low, bucket, cap) if host_buckets else 0
        age = bucket - first if first is not None else 0
        recent = wave = 1  # a rollout is only ever a young key: hosts using it within a day
        if age < day:
            recent = hosts_in_window(
                conn, span, kind, key, bucket - day, bucket + span, rollout_cap(fleet[bucket])
            )
            wave = _hosts_in_bucket(conn, span, kind, key, bucket)
        values[row] = (
            host_buckets,
            hosts,
            np.nan if first is None else first,
            np.nan if last is None else last,
            min(1.0, age / day),
            recent,
            wave,
            tenure(age, day, bucket, fleet[bucket].first_bucket),
            adopting(age, day, bucket, fleet[bucket].first_bucket) if first is not None else 0,
            known(age, day, bucket, fleet[bucket].first_bucket) if first is not None else 0,
        )
    return KeyStats({key: row for row, key in enumerate(keys)}, values)


def _hosts_in_bucket(conn: sqlite3.Connection, span: int, kind: str, key: str, bucket: int) -> int:
    row = conn.execute(
        "SELECT hosts FROM key_bucket WHERE span = ? AND kind = ? AND key = ? AND bucket = ?",
        (span, kind, key, bucket),
    ).fetchone()
    return int(row[0]) if row else 1


def rollout_hosts(conn: sqlite3.Connection, span: int, history: int, path: str, bucket: int) -> int:
    """Exactly how many hosts used `path` within the day up to `bucket` (a rollout's
    signal names them; everywhere else the count stops at the rollout level)."""
    day = max(span, int(history * ESTABLISHED_SHARE))
    return hosts_in_window(conn, span, "path", path, bucket - day, bucket + span, 1 << 30)


def rollout_cap(context: FleetContext) -> int:
    """Hosts within a day beyond which a young package-managed path is fully a rollout."""
    return math.ceil(max(ROLLOUT_SHARE * context.hosts, MIN_ROLLOUT_HOSTS))


def routine_cap(context: FleetContext) -> int:
    """Hosts beyond which a key is routine (counting further changes no score)."""
    return math.ceil(max(ROUTINE_SHARE * context.hosts, MIN_ROUTINE_HOSTS))


def _pair_stats(
    conn: sqlite3.Connection,
    span: int,
    history: int,
    rows: list[Any],
    rare: npt.NDArray[np.bool_],
) -> tuple[Array, Array]:
    """Per candidate: this host's buckets with this binary in its window (by path, or by
    name when the path is unknown; counted up to 12 for rare keys, up to 1 for routine
    ones) and the host's active buckets (two seeks on `host_bucket.seq` per host and
    bucket). A routine binary the host already used in an earlier bucket of this window
    needs no seek."""
    n = len(rows)
    host_path = np.ones(n)
    earliest: dict[tuple[str, str, str], int] = {}
    probes = []
    for i, (bucket, host, name, path, _) in enumerate(rows):  # rows come in bucket order
        first = earliest.setdefault((host, name, path), bucket)
        if rare[i] or not (bucket - history <= first < bucket):
            probes.append((i, bucket, host, name, path, int(rare[i])))
    window = "p.bucket >= c.bucket - :history AND p.bucket < c.bucket"
    used = {}
    for column in ("path", "name"):
        source = USED_SOURCE[column]
        where = f"{used_where(column, 'c.host', f'c.{column}')} AND {window}"
        used[column] = (
            f"CASE WHEN c.rare THEN {_capped_count(source, where, HOST_PATH_CAP)} "
            f"ELSE EXISTS (SELECT 1 FROM {source} WHERE {where}) END"
        )
    # The probes travel as one JSON parameter (json_each): several times cheaper than
    # filling a temporary table row by row.
    params: dict[str, object] = {"span": span, "history": history, "probes": _json(probes)}
    for i, count in conn.execute(
        "WITH c AS (SELECT value ->> 0 AS id, value ->> 1 AS bucket, value ->> 2 AS host, "
        "value ->> 3 AS name, value ->> 4 AS path, value ->> 5 AS rare "
        "FROM json_each(:probes)) "
        f"SELECT c.id, CASE WHEN c.path != '' THEN {used['path']} ELSE {used['name']} END "
        "FROM c",
        params,
    ):
        host_path[i] = count
    params["pairs"] = _json(sorted({(r[1], r[0]) for r in rows}))
    active_sql = host_activity_sql("a.host", "a.bucket", "a.bucket - :history")
    activity = {
        (host, bucket): active
        for host, bucket, active in conn.execute(
            "WITH a AS (SELECT value ->> 0 AS host, value ->> 1 AS bucket "
            "FROM json_each(:pairs)) "
            f"SELECT a.host, a.bucket, {active_sql} FROM a",
            params,
        )
    }
    return host_path, np.fromiter((activity[r[1], r[0]] for r in rows), float, n)


def _fresh_destinations(
    conn: sqlite3.Connection,
    span: int,
    history: int,
    rows: list[Any],
    young: npt.NDArray[np.bool_],
) -> Array:
    """d per candidate: 1 for a shell whose first connection in the bucket goes to an
    address no shell of its name used in its baseline window (a reverse shell's C2, not a
    health check's database), else 0. Looked up only for shells on hosts not yet mature
    (`young`): on a mature host max(m, d) is 1 whatever d is, so it stays 0 there."""
    fresh = np.zeros(len(rows))
    shells = [
        (i, r[0], r[2], r[4]) for i, r in enumerate(rows) if young[i] and is_plain_shell(r[2])
    ]
    if not shells:
        return fresh
    for i, value in conn.execute(
        "WITH c AS (SELECT value ->> 0 AS id, value ->> 1 AS bucket, value ->> 2 AS name, "
        "value ->> 3 AS first_id FROM json_each(:shells)) "
        f"SELECT c.id, coalesce({fresh_destination_sql('c', 'c.bucket - :history')}, 0) FROM c",
        {"span": span, "history": history, "shells": _json(shells)},
    ):
        fresh[i] = value
    return fresh


def _json(rows: list[Any]) -> str:
    """Rows as a JSON array of arrays (for `json_each`). Stored text is valid UTF-8
    (SQLite would have refused lone surrogates), so orjson encodes every value."""
    return orjson.dumps(rows).decode()


def _capped_count(source: str, where: str, cap: int) -> str:
    """SQL for min(count of matching rows, cap): one probe at offset cap-1 decides
    saturation; only below the cap are rows counted (fewer than cap of them)."""
    probe = f"SELECT 1 FROM {source} WHERE {where} LIMIT 1 OFFSET {cap - 1}"
    return (
        f"CASE WHEN ({probe}) IS NOT NULL THEN {cap} "
        f"ELSE (SELECT count(*) FROM {source} WHERE {where}) END"
    )
