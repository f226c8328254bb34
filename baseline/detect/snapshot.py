"""The baseline snapshot: what the on-host extension needs to score sockets itself.

Versioned JSON (format documented in docs/snapshot.md). Each entry is a binary the
fleet has used in the baseline window, with its counts; with a host, also how often
that host used it. A binary absent from a mature snapshot is, by definition, never seen.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.presence import refresh_presence
from rarenet.baseline.detect.scoring import key_rarity
from rarenet.baseline.store import Store
from rarenet.baseline.units import format_time, parse_time
from rarenet.extension.scoring import mature_buckets

SNAPSHOT_VERSION = 1


def build_snapshot(
    store: Store, settings: DetectSettings, host: str | None = None, at: int | None = None
) -> dict[str, Any]:
    """The snapshot at data time `at` (default: the latest data), optionally for one host."""
    fleet = fleet_snapshot(store, settings, at)
    return fleet if host is None else host_snapshot(store, settings, fleet, host)


def fleet_snapshot(store: Store, settings: DetectSettings, at: int | None = None) -> dict[str, Any]:
    """The fleet part: every binary of the window with its counts (one pass over the
    window's presence; `rarenet serve` builds it once per detection run)."""
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
        "SELECT name, path, count(DISTINCT host), count(*), min(bucket), max(bucket) "
        "FROM presence WHERE span = :span AND bucket >= :start AND bucket < :end "
        "GROUP BY name, path ORDER BY name, path",
        {"span": span, "start": start, "end": end},
    ).fetchall()
    host_buckets = np.array([r[3] for r in rows], dtype=float)
    hosts = np.array([r[2] for r in rows], dtype=float)
    rarity = key_rarity(
        host_buckets, hosts, np.full(len(rows), float(total)), np.full(len(rows), float(peak))
    )
    entries = [
        {
            "name": name,
            "path": path,
            "hosts": n_hosts,
            "host_buckets": n_buckets,
            "first_seen": format_time(first),
            "last_seen": format_time(last),
            "rarity": round(float(value), 4),
        }
        for (name, path, n_hosts, n_buckets, first, last), value in zip(rows, rarity, strict=True)
    ]
    return {
        "version": SNAPSHOT_VERSION,
        "generated_at": format_time(time.time()),
        "data_time": format_time(end),
        "host": None,
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


def host_snapshot(
    store: Store, settings: DetectSettings, fleet: dict[str, Any], host: str
) -> dict[str, Any]:
    """`fleet` for one host: each entry's `host_buckets_on_host` and the host's own
    activity (its maturity, m in docs/scoring.md), from indexed per-host queries."""
    span = int(fleet["bucket_span"])
    end = parse_time(fleet["data_time"])
    start = end - int(fleet["history"])
    counts = {
        (name, path): int(count)
        for name, path, count in store.conn.execute(
            "SELECT name, path, count(*) FROM presence WHERE span = ? AND host = ? "
            "AND bucket >= ? AND bucket < ? GROUP BY name, path",
            (span, host, start, end),
        )
    }
    active = store.conn.execute(
        "SELECT count(*) FROM host_bucket WHERE span = ? AND host = ? "
        "AND bucket >= ? AND bucket < ?",
        (span, host, start, end),
    ).fetchone()[0]
    return {
        **fleet,
        "host": host,
        "entries": [
            {**entry, "host_buckets_on_host": counts.get((entry["name"], entry["path"]), 0)}
            for entry in fleet["entries"]
        ],
        "host_activity": {
            "active_buckets": int(active),
            "mature_buckets": mature_buckets(settings.history, span),
        },
    }
