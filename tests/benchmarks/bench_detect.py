"""Benchmark: one detection run with 14 days of history and a 45-minute window.

Goal (issue 4): at 10k hosts ≤ 2 s and ≤ 500 MB. Fleet sizes come from
RARENET_BENCH_HOSTS (default "1000"); each is simulated, ingested and folded into
presence first (timed separately), then one `rarenet detect` run is timed in a fresh
process so its peak RSS is its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
from report import table, write_section

from baseline.config import load_config
from baseline.detect.presence import refresh_presence
from baseline.ingest.pipeline import Ingester
from baseline.ingest.workers import default_workers
from baseline.simulate import SimulationSpec, simulate_to_path
from baseline.store import Store

DAYS = 14


def prepare(hosts: int, directory: Path) -> tuple[Path, int, int, float]:
    log = directory / f"fleet-{hosts}.log"
    spec = SimulationSpec(hosts=hosts, days=DAYS, attacks=True, seed=11)
    result = simulate_to_path(spec, log, None)
    db = directory / f"fleet-{hosts}.db"
    config = load_config(None, env={})
    with Store(db) as store:
        Ingester(store, config, workers=default_workers()).ingest([str(log)])
        started = time.perf_counter()
        refresh_presence(store, int(config.detect.bucket_span))
        fold = time.perf_counter() - started
        presence = store.conn.execute("SELECT count(*) FROM presence").fetchone()[0]
    log.unlink()
    return db, result.end, presence, fold


def one_run(db: Path, at: int) -> tuple[dict[str, object], float, float]:
    script = (
        "import resource, sys, time, orjson\n"
        "from baseline.config import load_config\n"
        "from baseline.detect.rule import detect_once\n"
        "from baseline.store import Store\n"
        "store = Store(sys.argv[1])\n"
        "started = time.perf_counter()\n"
        "run = detect_once(store, load_config(None, env={}).detect, int(sys.argv[2]))\n"
        "seconds = time.perf_counter() - started\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(orjson.dumps({'run': run.as_json()['run'], 'seconds': seconds, 'rss': rss}).decode())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(db), str(at)], capture_output=True, check=True
    )
    data = orjson.loads(proc.stdout)
    return data["run"], data["seconds"], data["rss"]


def test_detection_run(tmp_path: Path) -> None:
    sizes = [int(n) for n in os.environ.get("RARENET_BENCH_HOSTS", "1000").split(",")]
    rows = [
        ["hosts", "presence rows (14 d)", "first fold s", "candidates", "run s", "peak RSS MiB"]
    ]
    for hosts in sizes:
        db, end, presence, fold = prepare(hosts, tmp_path)
        run, seconds, rss = one_run(db, end)
        rows.append(
            [
                f"{hosts:,}",
                f"{presence:,}",
                f"{fold:.1f}",
                f"{run['candidates']:,}",
                f"{seconds:.2f}",
                f"{rss:.0f}",
            ]
        )
        db.unlink()
    body = [
        f"`rarenet simulate --hosts N --days {DAYS} --attacks`, ingested, presence folded once "
        "(the first fold is what a new store pays once; later runs fold only new rows), then one "
        "`detect_once` at the end of the data, in a fresh process.",
        "",
        table(rows),
        "",
        "Goal: at 10k hosts ≤ 2 s and ≤ 500 MB per run. Fleet sizes not in the table were not "
        "measured (set RARENET_BENCH_HOSTS=1000,10000 to add them; 10k hosts × 14 days is "
        "≈ 60M simulated rows and takes ≈ 30 min to prepare here).",
    ]
    write_section("detection", "\n".join(body))
