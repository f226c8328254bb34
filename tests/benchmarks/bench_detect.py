"""Benchmark: one detection run with 14 days of history and a 45-minute window.

Goal (issue 4): at 10k hosts ≤ 2 s and ≤ 500 MB per run.

Simulating, ingesting and folding 14 days of 10k hosts (≈ 60M rows) does not fit a
benchmark run here, so larger fleets are built from a real 200-host simulation: its
folded presence (and aggregates) is replicated under new host names — same binaries,
same timing, k times the hosts — and one `detect_once` runs at the end of the data, in
a fresh process so its peak RSS is its own. Sizes: RARENET_BENCH_HOSTS (default
"1000,10000"); they must be multiples of 200.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from replicated_fleet import BASE_HOSTS, DAYS, SPAN, base_store, replicate
from report import table, write_section

from rarenet.baseline.detect.schedule import MEMORY_DAYS, RECORD
from rarenet.baseline.detect.signal import RULE_ID
from rarenet.baseline.store import Store
from rarenet.baseline.units import format_time

# Read at import: the suite's autouse fixture clears RARENET_* variables before each test.
SIZES = [int(n) for n in os.environ.get("RARENET_BENCH_HOSTS", "1000,10000").split(",")]
LATE_SHARE = 0.1  # of the hosts: their last LATE_HOURS of data arrive at once
LATE_HOURS = 6


def queue_late(db: Path, end: int) -> int:
    """Queue the last LATE_HOURS before the window of LATE_SHARE of the hosts, as the
    fold does when their buffered results arrive (laptops back online): host-buckets
    queued."""
    window = (end // SPAN) * SPAN - 3 * SPAN
    with Store(db) as store, store.transaction() as conn:
        hosts = [h for (h,) in conn.execute("SELECT DISTINCT host FROM host_last ORDER BY host")]
        late = hosts[:: round(1 / LATE_SHARE)]
        conn.executemany(
            "INSERT OR IGNORE INTO pending_host_bucket (span, bucket, host, version) "
            "SELECT span, bucket, host, 0 FROM host_bucket WHERE span = ? AND host = ? "
            "AND bucket >= ? AND bucket < ?",
            [(SPAN, host, window - LATE_HOURS * 3600, window) for host in late],
        )
        return int(conn.execute("SELECT count(*) FROM pending_host_bucket").fetchone()[0])


def one_run(db: Path, at: int) -> tuple[dict[str, object], float, float, float]:
    """One `detect_once` in a fresh process: (run record, wall s, CPU s, peak RSS MiB)."""
    script = (
        "import sys, time, orjson\n"
        "from rarenet.baseline.config import load_config\n"
        "from rarenet.baseline.detect.rule import detect_once\n"
        "from rarenet.baseline.store import Store\n"
        "store = Store(sys.argv[1])\n"
        "started, cpu = time.perf_counter(), time.process_time()\n"
        "run = detect_once(store, load_config(None, env={}).detect, int(sys.argv[2]))\n"
        "seconds, cpu = time.perf_counter() - started, time.process_time() - cpu\n"
        "status = open('/proc/self/status').read()\n"
        "rss = int(status.split('VmHWM:')[1].split()[0]) / 1024\n"
        "print(orjson.dumps({'run': run.as_json()['run'], 'seconds': seconds, 'cpu': cpu, "
        "'rss': rss}).decode())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(db), str(at)], capture_output=True, check=True
    )
    data = orjson.loads(proc.stdout)
    return data["run"], data["seconds"], data["cpu"], data["rss"]


REPEATS = 3  # runs per size; the median is reported (the machine may be shared)
OPEN_SIGNALS = 100  # open signals three days old, on binaries in the window (suspects)


def open_signals(db: Path, end: int) -> int:
    """Store OPEN_SIGNALS host signals from three days before `end` on binaries used in
    the run's window: each makes a suspect the run must take out of the baseline."""
    with Store(db) as store, store.transaction() as conn:
        pairs = conn.execute(
            "SELECT DISTINCT host, name, path FROM presence WHERE span = ? AND bucket >= ? "
            "ORDER BY host, name, path LIMIT ?",
            (SPAN, end - 3 * SPAN, OPEN_SIGNALS),
        ).fetchall()
        bucket = (end - 3 * 86400) // SPAN * SPAN
        for n, (host, name, path) in enumerate(pairs):
            conn.execute(
                "INSERT INTO signals (id, rule, host, name, path, bucket, run_id, created_at, "
                "score, initial_score, document, suppressed_count, group_id, kind) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, 0, 80, 80, '{}', 0, ?, "
                "'host')",
                (f"bench-{n}", RULE_ID, host, name, path, bucket, f"bench-{n}"),
            )
        return len(pairs)


def measure(db: Path, at: int) -> tuple[dict[str, object], list[float], float, float]:
    """REPEATS runs at the same data time (the first one emits the signals, later ones
    find them already stored): (first run record, wall times, median CPU s, max RSS)."""
    results = [one_run(db, at) for _ in range(REPEATS)]
    walls = sorted(r[1] for r in results)
    cpus = sorted(r[2] for r in results)
    return results[0][0], walls, cpus[len(cpus) // 2], max(r[3] for r in results)


def memory_size(db: Path, year: bool = False, table: str = "usage_memory") -> list[str]:
    """A table's size: rows, MiB on disk (its b-tree pages), bytes per host and per row
    (for the long memory, docs/scoring.md "Schedules": per host and binary). `year`:
    first every memory row holds the most days kept (MEMORY_DAYS), as a year of daily
    use would."""
    with Store(db) as store:
        conn = store.conn
        if year:
            with store.transaction():
                conn.execute(
                    "UPDATE usage_memory SET days = substr(printf('%.*c', ?, 'a'), 1, ?)",
                    (RECORD * MEMORY_DAYS, RECORD * MEMORY_DAYS),
                )
        rows, hosts = conn.execute(f"SELECT count(*), count(DISTINCT host) FROM {table}").fetchone()
        size = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", (table,)).fetchone()[0]
    return [
        f"{rows:,}",
        f"{size / 2**20:.0f}",
        f"{size / max(hosts, 1):,.0f}",
        f"{size / max(rows, 1):,.0f}",
    ]


BUSY_BEFORE_END = 10 * 3600  # the data ends at midnight: 14:00, working hours


def catch_up(db: Path, end: int) -> list[str]:
    """Runs at `end` until the queue is empty, each in a fresh process: (runs, signals,
    total s, slowest run s, peak RSS MiB) as table cells."""
    walls, rss, signals = [], 0.0, 0
    for _ in range(20):
        run, seconds, _cpu, peak = one_run(db, end)
        walls.append(seconds)
        rss = max(rss, peak)
        late = run["late"]
        assert isinstance(late, dict)
        signals += int(late["signals"]) + int(str(run["signals"]))
        if not late["behind"]:
            break
    return [f"{len(walls)}", f"{signals}", f"{sum(walls):.2f}", f"{max(walls):.2f}", f"{rss:.0f}"]


def test_detection_run(tmp_path: Path) -> None:
    base, end, fold = base_store(tmp_path)
    header = ["hosts", "presence rows (14 d)", "candidates", "signals", "run s (median)"]
    rows = [[*header, "min–max s", "CPU s", "peak RSS MiB", "goal"]]

    def add(label: str, presence: str, db: Path, goal: bool, at: int = end) -> None:
        run, walls, cpu, rss = measure(db, at)
        median = walls[len(walls) // 2]
        verdict = ("met" if median <= 2 and rss <= 500 else "NOT met") if goal else ""
        rows.append(
            [
                label,
                presence,
                f"{run['candidates']:,}",
                f"{run['signals']}",
                f"{median:.2f}",
                f"{walls[0]:.2f}–{walls[-1]:.2f}",
                f"{cpu:.2f}",
                f"{rss:.0f}",
                verdict,
            ]
        )

    open_signals(base, end)
    add(f"{BASE_HOSTS:,} (simulated)", "-", base, False)
    busy = end - BUSY_BEFORE_END
    late_rows = [["hosts", "late host-buckets", "runs to catch up", "signals", "s (all runs)",
                  "s (slowest run)", "peak RSS MiB"]]  # fmt: skip
    memory_rows = [["hosts", "table", "rows", "MiB", "bytes per host",
                    "bytes per row (host × binary, or host × destination)"]]  # fmt: skip
    for hosts in SIZES:
        db = tmp_path / f"fleet-{hosts}.db"
        presence = replicate(base, db, hosts // BASE_HOSTS)
        open_signals(db, end)
        add(f"{hosts:,} (quiet: {format_time(end)[11:16]})", f"{presence:,}", db, hosts == 10_000)
        add(
            f"{hosts:,} (busy: {format_time(busy)[11:16]})",
            f"{presence:,}",
            db,
            hosts == 10_000,
            busy,
        )
        queued = queue_late(db, end)
        late_rows.append([f"{hosts:,}", f"{queued:,}", *catch_up(db, end)])
        memory_rows.append([f"{hosts:,}", "usage_memory, 14 days as simulated", *memory_size(db)])
        memory_rows.append(
            [f"{hosts:,}", "usage_memory, a year: 32 days per row", *memory_size(db, True)]
        )
        memory_rows.append(
            [f"{hosts:,}", "destination_host, 14 days", *memory_size(db, table="destination_host")]
        )
        memory_rows.append(
            [f"{hosts:,}", "binary_user, 14 days", *memory_size(db, table="binary_user")]
        )
        db.unlink()
    body = [
        f"Base: `rarenet simulate --hosts {BASE_HOSTS} --days {DAYS} --attacks` ingested and folded "
        f"into presence ({fold:.1f} s for the first fold of 14 days; later runs fold only new rows). "
        "Larger fleets replicate that presence under new host names (same binaries and timing, "
        "k × the hosts) with exact aggregates. Each size: "
        f"{REPEATS} `detect_once` runs at the end of the data, each in a fresh process (cold "
        "SQLite cache; run s = the run itself; peak RSS = that process's VmHWM, which exec "
        "resets); the first emits the signals, the others find them stored. Every store "
        f"also holds {OPEN_SIGNALS} open signals three days old on binaries in the window, so "
        'each run takes their suspects out of the baseline (docs/scoring.md "Returning '
        'attackers").',
        "",
        table(rows),
        "",
        "Goal: at 10k hosts ≤ 2 s and ≤ 500 MB per run (judged on the median). What grows with "
        "the fleet is the number of candidates (host × binary in the 45-minute window): every "
        "window count is a few index seeks (docs/schema.md), never a scan of history. 50k "
        "hosts was not measured: its store (≈ 220M presence rows, ≈ 25 GB) takes hours to "
        "build here.",
        "",
        "**Catching up late data.** The same stores, then the last "
        f"{LATE_HOURS} h before the window of {LATE_SHARE:.0%} of the hosts queued as late "
        "(laptops whose buffered results arrive at once), and runs at the same data time "
        "until nothing waits, each in a fresh process (`[detect] catch_up` = 20,000 "
        "host-buckets per run; each run also scores its look-back):",
        "",
        table(late_rows),
        "",
        "**The long memory** (`usage_memory`: the days each host used each binary, kept "
        'for `[detect] memory`, 400 days; docs/scoring.md "Schedules"), measured on the '
        "same stores with SQLite's dbstat (b-tree pages): as the 14 days simulated left it, "
        "and with every row holding the 32 days kept at most, as a year of daily use leaves "
        "it; and `destination_host` (which hosts connected out to each address and port, "
        'pruned with presence; docs/scoring.md "Fresh installs and familiar '
        'destinations"), and `binary_user` (who ran each binary on each host, pruned with '
        "presence). A run reads them only for candidates at or above the threshold.",
        "",
        table(memory_rows),
    ]
    write_section("detection", "\n".join(body))
