"""Fold new observations into presence per (host, name, path, bucket) and its aggregates.

Presence, not counts, is the evidence: a binary is *present* on a host in a bucket if it
had at least one connection there, however chatty it was. Each refresh reads only the
observations added since the last one (an id watermark), so a run never rescans
history. Alongside presence it maintains, incrementally and exactly:

* `key_bucket`  — hosts per (path or name, bucket)
* `fleet_bucket` — hosts with any activity per bucket
* `host_bucket` — which hosts were active in which bucket, numbered per host (`seq`)
* `key_host` — which hosts ever used a path / name, with first and last bucket
* `shell_destination` — the addresses shells held sockets to (the first connection of
  each host's shell in a bucket), with first and last bucket
* `destination_host` — which hosts connected out to each address and port, with first
  and last bucket (baseline/detect/destinations.py)
* `binary_user` — which users ran each binary on each host (baseline/detect/
  binary_users.py)
* `usage_memory` — the days each host used each binary, kept far longer
  (baseline/detect/memory.py)
* `host_last` — each host's newest bucket with data (silent hosts)
* `pending_host_bucket` — the host-buckets this fold added data to, queued for scoring
  (baseline/detect/late.py)
"""

from __future__ import annotations

import sqlite3

from rarenet.baseline.detect.binary_users import forget_users, remember_users
from rarenet.baseline.detect.destinations import forget_destinations, remember_destinations
from rarenet.baseline.detect.late import remember_pending
from rarenet.baseline.detect.memory import remember_days
from rarenet.baseline.shells import SHELL_NAMES, UNSET_REMOTES, sql_list
from rarenet.baseline.store import Store

_STATE_KEY = "presence_watermark:{span}"
_PRUNED_KEY = "presence_pruned:{span}"  # buckets before this were pruned


def fold_mark(conn: sqlite3.Connection, span: int) -> int:
    """The fold's watermark: observations with id up to it are in presence (and the
    host-buckets it queued for scoring, baseline/detect/late.py, carry it)."""
    row = conn.execute(
        "SELECT value FROM store_state WHERE key = ?", (_STATE_KEY.format(span=span),)
    ).fetchone()
    return int(row[0]) if row else 0


def refresh_presence(store: Store, span: int, upto_id: int | None = None) -> int:
    """Fold observations with id in (watermark, upto_id] into presence; return how many.

    Runs in one transaction, so an interrupted refresh leaves everything as it was.
    """
    with store.transaction() as conn:
        key = _STATE_KEY.format(span=span)
        watermark = fold_mark(conn, span)
        top = conn.execute("SELECT coalesce(max(id), 0) FROM observations").fetchone()[0]
        if upto_id is not None:
            top = min(top, upto_id)
        if top <= watermark:
            return 0
        conn.execute("DROP TABLE IF EXISTS temp.new_presence")
        conn.execute(
            "CREATE TEMP TABLE new_presence AS "
            "SELECT (time / :span) * :span AS bucket, host, name, path, count(*) AS n, "
            "min(time) AS first_time, min(id) AS first_id, max(time) AS last_time "
            "FROM observations WHERE id > :low AND id <= :high GROUP BY 1, 2, 3, 4",
            {"span": span, "low": watermark, "high": top},
        )
        folded = conn.execute("SELECT coalesce(sum(n), 0) FROM temp.new_presence").fetchone()[0]
        remember_pending(conn, span, int(top))
        _count_new_host_buckets(store, span)
        _count_new_key_buckets(store, span)
        _remember_key_hosts(store, span)
        _remember_shell_destinations(store, span)
        remember_days(conn, span)
        _gather_links(conn, span, watermark, int(top))
        remember_destinations(conn, span)
        remember_users(conn, span)
        conn.execute("DROP TABLE temp.new_links")
        conn.execute(
            "INSERT OR IGNORE INTO name_path (span, name, path) "
            "SELECT DISTINCT :span, name, path FROM temp.new_presence",
            {"span": span},
        )
        conn.execute(
            "INSERT INTO presence (span, bucket, host, name, path, connections, first_time, "
            "last_time, first_id) SELECT :span, bucket, host, name, path, n, first_time, "
            "last_time, first_id FROM temp.new_presence WHERE true "
            "ON CONFLICT (span, bucket, host, name, path) DO UPDATE SET "
            "connections = connections + excluded.connections, "
            "first_time = min(first_time, excluded.first_time), "
            "last_time = max(last_time, excluded.last_time)",
            {"span": span},
        )
        conn.execute(
            "INSERT INTO store_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, str(top)),
        )
        conn.execute("DROP TABLE temp.new_presence")
        return int(folded)


def _gather_links(conn: sqlite3.Connection, span: int, low: int, high: int) -> None:
    """`temp.new_links`: the new observations (id in (low, high]) per host, binary, user,
    remote address, port and direction, with first and last bucket — read once for the
    destination and user folds, which reduce it further."""
    conn.execute("DROP TABLE IF EXISTS temp.new_links")
    conn.execute(
        "CREATE TEMP TABLE new_links AS SELECT host, name, path, "
        "coalesce(username, '') AS user, remote_address AS remote, remote_port AS port, "
        "direction, min(time / :span) * :span AS first_bucket, "
        "max(time / :span) * :span AS last_bucket FROM observations "
        "WHERE id > :low AND id <= :high GROUP BY 1, 2, 3, 4, 5, 6, 7",
        {"span": span, "low": low, "high": high},
    )


def _count_new_host_buckets(store: Store, span: int) -> None:
    """Hosts newly active in a bucket: count them per bucket, then remember them with
    their sequence numbers (`seq`: the host's active buckets up to this one)."""
    conn = store.conn
    conn.execute("DROP TABLE IF EXISTS temp.new_host_bucket")
    conn.execute(
        "CREATE TEMP TABLE new_host_bucket (host TEXT, bucket INTEGER, seq INTEGER, "
        "PRIMARY KEY (host, bucket)) WITHOUT ROWID"
    )
    # A new bucket's seq: the seq of the host's last stored bucket before it (or the
    # one before its first stored bucket), plus its rank among the host's new buckets.
    conn.execute(
        "INSERT INTO temp.new_host_bucket (host, bucket, seq) "
        "SELECT host, bucket, coalesce("
        "  (SELECT hb.seq FROM host_bucket AS hb WHERE hb.span = :span AND hb.host = np.host "
        "   AND hb.bucket < np.bucket ORDER BY hb.bucket DESC LIMIT 1), "
        "  (SELECT hb.seq - 1 FROM host_bucket AS hb WHERE hb.span = :span AND hb.host = np.host "
        "   ORDER BY hb.bucket LIMIT 1), 0) "
        "+ row_number() OVER (PARTITION BY host ORDER BY bucket) "
        "FROM (SELECT DISTINCT host, bucket FROM temp.new_presence) AS np "
        "WHERE NOT EXISTS (SELECT 1 FROM host_bucket AS hb WHERE hb.span = :span "
        "AND hb.host = np.host AND hb.bucket = np.bucket)",
        {"span": span},
    )
    conn.execute(
        "INSERT INTO fleet_bucket (span, bucket, hosts) "
        "SELECT :span, bucket, count(*) FROM temp.new_host_bucket GROUP BY bucket "
        "ON CONFLICT (span, bucket) DO UPDATE SET hosts = hosts + excluded.hosts",
        {"span": span},
    )
    # Late data (a bucket older than some already stored): later buckets move up.
    conn.execute(
        "UPDATE host_bucket SET seq = seq + (SELECT count(*) FROM temp.new_host_bucket AS n "
        "WHERE n.host = host_bucket.host AND n.bucket < host_bucket.bucket) "
        "FROM (SELECT host, min(bucket) AS low FROM temp.new_host_bucket GROUP BY host) AS m "
        "WHERE host_bucket.span = :span AND host_bucket.host = m.host "
        "AND host_bucket.bucket > m.low",
        {"span": span},
    )
    conn.execute(
        "INSERT INTO host_bucket (span, host, bucket, seq) "
        "SELECT :span, host, bucket, seq FROM temp.new_host_bucket",
        {"span": span},
    )
    conn.execute(
        "INSERT INTO host_last (span, host, last_bucket) "
        "SELECT :span, host, max(bucket) FROM temp.new_host_bucket WHERE true GROUP BY host "
        "ON CONFLICT (span, host) DO UPDATE SET "
        "last_bucket = max(last_bucket, excluded.last_bucket)",
        {"span": span},
    )
    conn.execute("DROP TABLE temp.new_host_bucket")


def _remember_key_hosts(store: Store, span: int) -> None:
    """Record (key, host) pairs with the first and last bucket the host used the key."""
    for kind, only in (("path", "path != ''"), ("name", "true")):
        store.conn.execute(
            f"INSERT INTO key_host (span, kind, key, host, first_bucket, last_bucket) "
            f"SELECT :span, '{kind}', {kind}, host, min(bucket), max(bucket) "
            f"FROM temp.new_presence WHERE {only} GROUP BY {kind}, host "
            "ON CONFLICT (span, kind, key, host) DO UPDATE SET "
            "first_bucket = min(first_bucket, excluded.first_bucket), "
            "last_bucket = max(last_bucket, excluded.last_bucket)",
            {"span": span},
        )


def _remember_shell_destinations(store: Store, span: int) -> None:
    """Where shells held sockets to: the remote address of each new presence row's first
    connection (one rowid lookup per shell row; no second pass over the observations)."""
    store.conn.execute(
        "INSERT INTO shell_destination (span, name, remote, first_bucket, last_bucket) "
        "SELECT :span, np.name, o.remote_address, min(np.bucket), max(np.bucket) "
        "FROM temp.new_presence AS np JOIN observations AS o ON o.id = np.first_id "
        f"WHERE np.name IN ({sql_list(SHELL_NAMES)}) "
        f"AND o.remote_address NOT IN ({sql_list(UNSET_REMOTES)}) "
        "GROUP BY np.name, o.remote_address ON CONFLICT (span, name, remote) DO UPDATE SET "
        "first_bucket = min(first_bucket, excluded.first_bucket), "
        "last_bucket = max(last_bucket, excluded.last_bucket)",
        {"span": span},
    )


# Presence rows of a host for a path, or for a name (through the paths it was seen with):
# seeks on the (span, host, path, bucket) index either way.
USED_SOURCE = {
    "path": "presence AS p INDEXED BY presence_host_path",
    "name": "name_path AS np JOIN presence AS p INDEXED BY presence_host_path",
}


def used_where(kind: str, host: str, key: str) -> str:
    """SQL condition (over `USED_SOURCE[kind]`) for the host's presence rows of a key;
    the caller adds the bucket range."""
    if kind == "path":
        return f"p.span = :span AND p.host = {host} AND p.path = {key}"
    return (
        f"np.span = :span AND np.name = {key} AND p.span = :span AND p.host = {host} "
        f"AND p.path = np.path AND p.name = {key}"
    )


def hosts_in_window(
    conn: sqlite3.Connection, span: int, kind: str, key: str, low: int, high: int, cap: int
) -> int:
    """Distinct hosts that used a path / name in buckets [low, high), counted up to `cap`,
    host by host from `key_host`: a host whose first use falls in the window counts as
    is; any other is checked with one index seek (never a scan of the key's presence)."""
    row = conn.execute(
        "SELECT value FROM store_state WHERE key = ?", (_PRUNED_KEY.format(span=span),)
    ).fetchone()
    exact_from = max(low, int(row[0]) if row else low)  # older first buckets may be pruned
    return int(
        conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM key_host AS kh WHERE kh.span = :span "
            "AND kh.kind = :kind AND kh.key = :key AND kh.last_bucket >= :low "
            "AND kh.first_bucket < :high AND (kh.first_bucket >= :exact_from "
            f"OR EXISTS (SELECT 1 FROM {USED_SOURCE[kind]} WHERE {used_where(kind, 'kh.host', ':key')} "
            "AND p.bucket >= :low AND p.bucket < :high)) LIMIT :cap)",
            {
                "span": span,
                "kind": kind,
                "key": key,
                "low": low,
                "high": high,
                "exact_from": exact_from,
                "cap": cap,
            },
        ).fetchone()[0]
    )


def host_activity_sql(host: str, bucket: str, low: str) -> str:
    """SQL for how many buckets in [low, bucket) the host was active (from `seq`)."""
    last = (
        f"(SELECT hb.seq FROM host_bucket AS hb WHERE hb.span = :span AND hb.host = {host} "
        f"AND hb.bucket < {bucket} ORDER BY hb.bucket DESC LIMIT 1)"
    )
    first = (
        f"(SELECT hb.seq - 1 FROM host_bucket AS hb WHERE hb.span = :span AND hb.host = {host} "
        f"AND hb.bucket >= {low} ORDER BY hb.bucket LIMIT 1)"
    )
    return f"max(0, coalesce({last} - {first}, 0))"


def _count_new_key_buckets(store: Store, span: int) -> None:
    """Hosts newly using a path / name in a bucket, added to `key_bucket` (before the
    presence upsert, so "new" means: not in presence yet)."""
    store.conn.execute(
        "INSERT INTO key_bucket (span, kind, key, bucket, hosts) "
        "SELECT :span, 'path', path, bucket, count(*) FROM (SELECT DISTINCT bucket, host, path "
        "  FROM temp.new_presence AS np WHERE path != '' AND NOT EXISTS (SELECT 1 FROM presence "
        "  AS p WHERE p.span = :span AND p.host = np.host AND p.path = np.path "
        "  AND p.bucket = np.bucket)) "
        "GROUP BY path, bucket ON CONFLICT (span, kind, key, bucket) "
        "DO UPDATE SET hosts = hosts + excluded.hosts",
        {"span": span},
    )
    store.conn.execute(
        "INSERT INTO key_bucket (span, kind, key, bucket, hosts) "
        "SELECT :span, 'name', name, bucket, count(*) FROM (SELECT DISTINCT bucket, host, name "
        "  FROM temp.new_presence AS np WHERE NOT EXISTS (SELECT 1 FROM presence AS p "
        "  WHERE p.span = :span AND p.bucket = np.bucket AND p.host = np.host "
        "  AND p.name = np.name)) "
        "GROUP BY name, bucket ON CONFLICT (span, kind, key, bucket) "
        "DO UPDATE SET hosts = hosts + excluded.hosts",
        {"span": span},
    )


def prune_presence(store: Store, span: int, before_bucket: int) -> int:
    """Drop presence and its aggregates for buckets before `before_bucket`."""
    with store.transaction() as conn:
        removed = conn.execute(
            "DELETE FROM presence WHERE span = ? AND bucket < ?", (span, before_bucket)
        ).rowcount
        conn.execute(
            "DELETE FROM shell_destination WHERE span = ? AND last_bucket < ?",
            (span, before_bucket),
        )
        for table in ("key_bucket", "fleet_bucket", "host_bucket", "pending_host_bucket"):
            conn.execute(
                f"DELETE FROM {table} WHERE span = ? AND bucket < ?", (span, before_bucket)
            )
        conn.execute(
            "DELETE FROM host_last WHERE span = ? AND last_bucket < ?", (span, before_bucket)
        )
        forget_destinations(conn, span, before_bucket)
        forget_users(conn, span, before_bucket)
        # A pair's first bucket may now predate what is kept (a lower bound from here on).
        conn.execute(
            "DELETE FROM key_host WHERE span = ? AND last_bucket < ?", (span, before_bucket)
        )
        conn.execute(
            "INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            (_PRUNED_KEY.format(span=span), str(before_bucket)),
        )
        return int(removed)
