"""Fold new observations into presence per (host, name, path, bucket) and its aggregates.

Presence, not counts, is the evidence: a binary is *present* on a host in a bucket if it
had at least one connection there, however chatty it was. Each refresh reads only the
observations added since the last one (an id watermark), so a run never rescans
history. Alongside presence it maintains, incrementally and exactly:

* `key_bucket`  — hosts per (path or name, bucket)
* `fleet_bucket` — hosts with any activity per bucket
* `host_bucket` — which hosts were active in which bucket
"""

from __future__ import annotations

from baseline.store import Store

_STATE_KEY = "presence_watermark:{span}"


def refresh_presence(store: Store, span: int, upto_id: int | None = None) -> int:
    """Fold observations with id in (watermark, upto_id] into presence; return how many.

    Runs in one transaction, so an interrupted refresh leaves everything as it was.
    """
    with store.transaction() as conn:
        key = _STATE_KEY.format(span=span)
        row = conn.execute("SELECT value FROM store_state WHERE key = ?", (key,)).fetchone()
        watermark = int(row[0]) if row else 0
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
        _count_new_host_buckets(store, span)
        _count_new_key_buckets(store, span)
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


def _count_new_host_buckets(store: Store, span: int) -> None:
    """Hosts newly active in a bucket: count them per bucket, then remember them."""
    store.conn.execute(
        "INSERT INTO fleet_bucket (span, bucket, hosts) "
        "SELECT :span, bucket, count(*) FROM (SELECT DISTINCT bucket, host FROM temp.new_presence "
        "  AS np WHERE NOT EXISTS (SELECT 1 FROM host_bucket AS hb "
        "  WHERE hb.span = :span AND hb.host = np.host AND hb.bucket = np.bucket)) "
        "GROUP BY bucket ON CONFLICT (span, bucket) DO UPDATE SET hosts = hosts + excluded.hosts",
        {"span": span},
    )
    store.conn.execute(
        "INSERT OR IGNORE INTO host_bucket (span, host, bucket) "
        "SELECT DISTINCT :span, host, bucket FROM temp.new_presence",
        {"span": span},
    )


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
        for table in ("key_bucket", "fleet_bucket", "host_bucket"):
            conn.execute(
                f"DELETE FROM {table} WHERE span = ? AND bucket < ?", (span, before_bucket)
            )
        return int(removed)
