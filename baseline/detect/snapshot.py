"""The baseline snapshot: what the on-host extension needs to score sockets itself.

Versioned JSON (format documented in docs/snapshot.md). Each entry is a binary the
fleet has used in the baseline window, with its counts; with a host, also how often
that host used it. A binary absent from a mature snapshot is, by definition, never seen.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from baseline.config import DetectSettings
from baseline.detect.features import MATURE_SHARE
from baseline.detect.presence import refresh_presence
from baseline.detect.scoring import key_rarity
from baseline.store import Store
from baseline.units import format_time

SNAPSHOT_VERSION = 1


def build_snapshot(
    store: Store, settings: DetectSettings, host: str | None = None, at: int | None = None
) -> dict[str, Any]:
    """The snapshot at data time `at` (default: the latest data), optionally for one host."""
    span = max(1, int(settings.bucket_span))
    refresh_presence(store, span)
    if at is None:
        latest = store.conn.execute(
            "SELECT max(bucket) FROM fleet_bucket WHERE span = ?", (span,)
        ).fetchone()[0]
        at = int(latest) + span if latest is not None else int(time.time())
    end = (at // span) * span
    start = end - int(settings.history)
    total, peak, buckets, since = store.conn.execute(
        "SELECT coalesce(sum(hosts), 0), coalesce(max(hosts), 0), count(*), min(bucket) "
        "FROM fleet_bucket WHERE span = ? AND bucket >= ? AND bucket < ?",
        (span, start, end),
    ).fetchone()
    rows = store.conn.execute(
        "SELECT name, path, count(DISTINCT host), count(*), min(bucket), max(bucket), "
        "sum(CASE WHEN host = :host THEN 1 ELSE 0 END) FROM presence "
        "WHERE span = :span AND bucket >= :start AND bucket < :end GROUP BY name, path "
        "ORDER BY name, path",
        {"span": span, "start": start, "end": end, "host": host or ""},
    ).fetchall()
    host_buckets = np.array([r[3] for r in rows], dtype=float)
    hosts = np.array([r[2] for r in rows], dtype=float)
    rarity = key_rarity(
        host_buckets, hosts, np.full(len(rows), float(total)), np.full(len(rows), float(peak))
    )
    entries = []
    for row, value in zip(rows, rarity, strict=True):
        name, path, n_hosts, n_buckets, first, last, on_host = row
        entry: dict[str, Any] = {
            "name": name,
            "path": path,
            "hosts": n_hosts,
            "host_buckets": n_buckets,
            "first_seen": format_time(first),
            "last_seen": format_time(last),
            "rarity": round(float(value), 4),
        }
        if host is not None:
            entry["host_buckets_on_host"] = on_host
        entries.append(entry)
    snapshot: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "generated_at": format_time(time.time()),
        "data_time": format_time(end),
        "host": host,
        "bucket_span": span,
        "history": int(settings.history),
        "warmup_buckets": settings.warmup_buckets,
        "fleet": {
            "host_buckets": int(total),
            "hosts": int(peak),
            "buckets": int(buckets),
            "since": format_time(since) if since is not None else None,
            "mature": int(buckets) >= settings.warmup_buckets,
        },
        "entries": entries,
    }
    if host is not None:  # optional, additive: this host's maturity (m in docs/scoring.md)
        mature = max(1, int(settings.history * MATURE_SHARE) // span)
        active = store.conn.execute(
            "SELECT count(*) FROM host_bucket WHERE span = ? AND host = ? "
            "AND bucket >= ? AND bucket < ?",
            (span, host, start, end),
        ).fetchone()[0]
        snapshot["host_activity"] = {"active_buckets": int(active), "mature_buckets": mature}
    return snapshot
