"""Fleets of any size for the detection benchmarks (bench_detect.py, bench_shards.py):
a real 200-host, 14-day simulation, ingested and folded once, whose presence and
aggregates are replicated under new host names — same binaries, same timing, k times
the hosts."""

from __future__ import annotations

import time
from pathlib import Path

from rarenet.baseline.config import load_config
from rarenet.baseline.detect.presence import refresh_presence
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.ingest.workers import default_workers
from rarenet.baseline.simulate import SimulationSpec, simulate_to_path
from rarenet.baseline.store import Store

BASE_HOSTS = 200
DAYS = 14
SPAN = 900


def base_store(directory: Path) -> tuple[Path, int, float]:
    """The 200-host, 14-day simulation, ingested and folded; returns (db, end, fold s)."""
    log = directory / "base.log"
    result = simulate_to_path(
        SimulationSpec(hosts=BASE_HOSTS, days=DAYS, attacks=True, seed=11), log, None
    )
    db = directory / "base.db"
    with Store(db) as store:
        Ingester(store, load_config(None, env={}), workers=default_workers()).ingest([str(log)])
        started = time.perf_counter()
        refresh_presence(store, SPAN)
        fold = time.perf_counter() - started
        # a service that has been running: every host-bucket so far was scored on time
        with store.transaction() as conn:
            conn.execute("DELETE FROM pending_host_bucket")
    log.unlink()
    return db, result.end, fold


def replicate(base: Path, target: Path, copies: int, first_copy: int = 0) -> int:
    """A store whose presence is `copies` × the base fleet under new host names (copies
    `first_copy` … on: a host shard takes a disjoint range). The copies are disjoint host
    sets, so the aggregates are exactly the base ones × copies (hosts per key-bucket and
    per bucket) or renamed copies (host activity, key users). The raw observations are
    the base hosts' (copy 0) only. Indexes on presence are built after the bulk load.
    Returns presence rows."""
    with Store(target) as store:
        conn = store.conn
        conn.execute("ATTACH DATABASE ? AS base", (str(base),))
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'presence' "
            "AND sql IS NOT NULL"
        ).fetchall()
        with store.transaction():
            if first_copy == 0:
                conn.execute("INSERT INTO observations SELECT * FROM base.observations")
            conn.execute("INSERT INTO store_state SELECT * FROM base.store_state")
            conn.execute("INSERT INTO name_path SELECT * FROM base.name_path")
            # shell destinations are per (shell name, address): the copies add none
            conn.execute("INSERT INTO shell_destination SELECT * FROM base.shell_destination")
            for name, _ in indexes:
                conn.execute(f"DROP INDEX {name}")
            conn.execute(
                "INSERT INTO key_bucket SELECT span, kind, key, bucket, hosts * ? FROM base.key_bucket",
                (copies,),
            )
            conn.execute(
                "INSERT INTO fleet_bucket SELECT span, bucket, hosts * ? FROM base.fleet_bucket",
                (copies,),
            )
        for copy in range(first_copy, first_copy + copies):
            suffix = f"~{copy}" if copy else ""
            with store.transaction():
                conn.execute(
                    "INSERT INTO presence SELECT span, bucket, host || ?, name, path, connections, "
                    "first_time, last_time, first_id FROM base.presence",
                    (suffix,),
                )
                conn.execute(
                    "INSERT INTO host_bucket SELECT span, host || ?, bucket, seq FROM base.host_bucket",
                    (suffix,),
                )
                conn.execute(
                    "INSERT INTO host_last SELECT span, host || ?, last_bucket FROM base.host_last",
                    (suffix,),
                )
                conn.execute(
                    "INSERT INTO key_host SELECT span, kind, key, host || ?, first_bucket, "
                    "last_bucket FROM base.key_host",
                    (suffix,),
                )
                conn.execute(
                    "INSERT INTO usage_memory SELECT span, host || ?, name, path, last_time, "
                    "days FROM base.usage_memory",
                    (suffix,),
                )
                conn.execute(
                    "INSERT INTO destination_host SELECT span, remote, port, host || ?, "
                    "first_bucket, last_bucket FROM base.destination_host",
                    (suffix,),
                )
                conn.execute(
                    "INSERT INTO binary_user SELECT span, host || ?, name, path, user, "
                    "first_bucket, last_bucket FROM base.binary_user",
                    (suffix,),
                )
        with store.transaction():
            for _, sql in indexes:
                conn.execute(sql)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = conn.execute("SELECT count(*) FROM presence").fetchone()[0]
        conn.execute("DETACH DATABASE base")
    return int(rows)
