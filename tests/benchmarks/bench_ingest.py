"""Benchmark: end-to-end `rarenet ingest` of ≥ 1M simulated rows vs a ceiling measured
in the same run (orjson parse + raw executemany into an unindexed table).

Goal (issue 2): ≥ 100k rows/s and ≥ 0.6 × the ceiling on a 2-core machine.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
from report import table, write_section

from rarenet.baseline.simulate import SimulationSpec, simulate_to_path

MIN_ROWS = 1_000_000
COLUMNS = (
    "pid", "fd", "socket", "family", "protocol", "local_address", "local_port", "remote_address",
    "remote_port", "state", "net_namespace", "name", "path", "cmdline", "cwd", "uid", "username",
    "parent", "parent_name", "direction",
)  # fmt: skip


def simulated_log(directory: Path) -> tuple[Path, int]:
    hosts = 300
    while True:
        log = directory / f"fleet-{hosts}.log"
        result = simulate_to_path(
            SimulationSpec(hosts=hosts, days=14, attacks=True, seed=7), log, None
        )
        if result.rows >= MIN_ROWS:
            return log, result.rows
        hosts = int(hosts * MIN_ROWS / max(result.rows, 1) * 1.1) + 1


def ceiling(log: Path, db: Path) -> tuple[int, float]:
    """Fast JSON parse + raw executemany into an unindexed table, single process."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"CREATE TABLE raw (host, time, {', '.join(COLUMNS)})")
    insert = f"INSERT INTO raw VALUES ({', '.join('?' * (len(COLUMNS) + 2))})"
    rows = 0
    started = time.perf_counter()
    batch: list[tuple[object, ...]] = []
    with log.open("rb") as handle:
        for line in handle:
            obj = orjson.loads(line)
            found = [obj["columns"]] if "columns" in obj else obj["diffResults"]["added"]
            host, when = obj.get("hostIdentifier") or obj.get("hostname"), obj["unixTime"]
            batch.extend((host, when, *[r.get(c) for c in COLUMNS]) for r in found)
            if len(batch) >= 4096:
                conn.execute("BEGIN")
                conn.executemany(insert, batch)
                conn.execute("COMMIT")
                rows += len(batch)
                batch = []
    conn.execute("BEGIN")
    conn.executemany(insert, batch)
    conn.execute("COMMIT")
    rows += len(batch)
    conn.close()
    return rows, time.perf_counter() - started


def rarenet_ingest(log: Path, db: Path, workers: int) -> tuple[dict[str, int], float, float]:
    """Run the real command; return its report, wall seconds and its peak RSS (MiB)."""
    script = (
        "import resource, runpy, sys\n"
        "sys.argv = ['rarenet'] + sys.argv[1:]\n"
        "try:\n"
        "    runpy.run_module('rarenet', run_name='__main__')\n"
        "finally:\n"
        "    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "    sys.stderr.write(f'RSS {own} {kids}\\n')\n"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "ingest",
            "--db",
            str(db),
            "--workers",
            str(workers),
            "--json",
            str(log),
        ],
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr.decode()
    rss_line = [line for line in proc.stderr.decode().splitlines() if line.startswith("RSS ")][-1]
    own, kids = (int(v) / 1024 for v in rss_line.split()[1:])
    return orjson.loads(proc.stdout), seconds, max(own, kids)


def test_ingest_throughput(tmp_path: Path) -> None:
    log, rows = simulated_log(tmp_path)
    size_mib = log.stat().st_size / 2**20
    ceiling_rows, ceiling_seconds = ceiling(log, tmp_path / "ceiling.db")
    assert ceiling_rows == rows
    ceiling_rate = rows / ceiling_seconds
    results = []
    cpus = len(os.sched_getaffinity(0))
    for workers in sorted({1, min(cpus, 4)}):
        report, seconds, rss = rarenet_ingest(log, tmp_path / f"rarenet-{workers}.db", workers)
        parsed = (
            report["observations"] + report["duplicates"] + report["filtered"] + report["skipped"]
        )
        assert parsed == rows and report["rejected"] == 0
        results.append((workers, report, seconds, rss))
    body = [
        f"Input: `rarenet simulate --hosts … --days 14 --attacks` — {rows:,} rows in "
        f"{log.stat().st_size:,} bytes ({size_mib:.0f} MiB), one JSON line per event or poll.",
        "",
    ]
    rows_table = [["run", "rows/s", "× ceiling", "wall s", "peak RSS MiB"]]
    rows_table.append(
        [
            "ceiling: orjson + executemany, unindexed, 1 process",
            f"{ceiling_rate:,.0f}",
            "1.00",
            f"{ceiling_seconds:.1f}",
            "-",
        ]
    )
    for workers, _report, seconds, rss in results:
        rate = rows / seconds
        rows_table.append(
            [
                f"`rarenet ingest --workers {workers}` (whole command)",
                f"{rate:,.0f}",
                f"{rate / ceiling_rate:.2f}",
                f"{seconds:.1f}",
                f"{rss:.0f}",
            ]
        )
    best = max(rows / seconds for _, _, seconds, _ in results)
    body.append(table(rows_table))
    body.append("")
    body.append(
        f"Goal: ≥ 100,000 rows/s and ≥ 0.6 × ceiling. Best: {best:,.0f} rows/s = "
        f"{best / ceiling_rate:.2f} × ceiling — {'met' if best >= 100_000 and best >= 0.6 * ceiling_rate else 'NOT met'}."
    )
    write_section("ingest", "\n".join(body))
