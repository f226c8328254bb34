"""Benchmark: `extension.collector.scan()` with 50 processes holding 1,000 and 2,000
connected TCP sockets (their peer, a listener in a test-made namespace, holds as many).

Goal: ≤ 50 ms per scan. Needs root and `ip netns`; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report import table, write_section
from support.netns import (
    Child,
    VethNamespace,
    children,
    holder_argv,
    netns_unavailable_reason,
    veth_namespace,
    wait_until,
)

CLIENTS = 50
PER_CLIENT = (20, 40)  # 2,001 and 4,001 sockets on the host
SCANS = 20
GOAL_MS = 50.0
ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter so its memory is the collector's, not pytest's. Peak RSS is
# VmHWM: getrusage's ru_maxrss of an exec'd child starts at its parent's (pytest's) RSS.
SCANNER = r"""
import json, sys, time

def memory():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}

bare = memory()
from rarenet.extension.collector import scan
scan()  # warm-up: imports, page cache
warm = memory()
wall, cpu, rows = [], [], []
for _ in range(int(sys.argv[1])):
    started, started_cpu = time.perf_counter(), time.process_time()
    found = scan()
    wall.append(time.perf_counter() - started)
    cpu.append(time.process_time() - started_cpu)
    rows.append(len(found))
    del found
print(json.dumps({"wall": wall, "cpu": cpu, "rows": rows, "bare": bare, "warm": warm,
                  "end": memory()}))
"""


def socket_count(pid: int) -> int:
    fd_dir = f"/proc/{pid}/fd"
    return sum(os.readlink(f"{fd_dir}/{fd}").startswith("socket:[") for fd in os.listdir(fd_dir))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_scanner() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", SCANNER, str(SCANS)],
        capture_output=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def start_load(kids: list[Child], made: VethNamespace, per_client: int) -> list[Child]:
    """A listener in the namespace; CLIENTS host processes × `per_client` connections to it."""
    listen = {"sockets": [{"op": "listen", "host": made.ns_v4}]}
    server = Child(made.exec_argv(holder_argv(listen)))
    kids.append(server)
    port = server.line()["sockets"][0]["laddr"][1]
    spec = {"sockets": [{"op": "connect", "host": made.ns_v4, "port": port, "count": per_client}]}
    clients = [Child(holder_argv(spec)) for _ in range(CLIENTS)]
    kids.extend(clients)
    for client in clients:
        client.line(timeout=30)
    wanted = CLIENTS * per_client + 1
    assert wait_until(lambda: socket_count(server.pid) >= wanted, timeout=30)
    return [server, *clients]


def measure(made: VethNamespace, per_client: int) -> dict[str, Any]:
    """Scan timings and memory while CLIENTS × `per_client` connections are open."""
    with children() as kids:
        load = start_load(kids, made, per_client)
        result = run_scanner()
        result["sockets"] = sum(socket_count(child.pid) for child in load)
        result["processes"] = len(load)
    expected_rows = 2 * CLIENTS * per_client  # each connection: client row + server row
    assert min(result["rows"]) >= expected_rows, result["rows"]
    return result


def test_collector_scan_time() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"collector benchmark: {reason}")
    with veth_namespace() as made:
        results = [measure(made, per_client) for per_client in PER_CLIENT]
    write_section("collector", summary(results))


def summary(results: list[dict[str, Any]]) -> str:
    rows = [["measure", *(f"{r['sockets']:,} sockets" for r in results)]]

    def add(label: str, value: Callable[[dict[str, Any]], str]) -> None:
        rows.append([label, *(value(r) for r in results)])

    def ms(key: str, pick: Callable[[list[float]], float]) -> Callable[[dict[str, Any]], str]:
        return lambda r: f"{pick([t * 1000 for t in r[key]]):.1f}"

    add("processes holding the sockets", lambda r: f"{r['processes']}")
    add("rows per scan (every process on the host)", lambda r: f"{max(r['rows']):,}")
    add("wall ms / scan: median", ms("wall", statistics.median))
    add("wall ms / scan: p95", ms("wall", lambda ts: percentile(ts, 0.95)))
    add("CPU ms / scan (user + sys): median", ms("cpu", statistics.median))
    add("peak RSS MiB of the scanning process (VmHWM)", lambda r: mib(r["end"]["VmHWM"]))
    add("RSS MiB: bare interpreter", lambda r: mib(r["bare"]["VmRSS"]))
    add("RSS MiB: after import + 1 scan", lambda r: mib(r["warm"]["VmRSS"]))
    add(
        "RSS MiB growth over the timed scans", lambda r: mib(r["end"]["VmRSS"] - r["warm"]["VmRSS"])
    )
    verdicts = [
        f"{r['sockets']:,} sockets: {'met' if statistics.median(r['wall']) * 1000 <= GOAL_MS else 'NOT met'}"
        for r in results
    ]
    return (
        f"{CLIENTS} client processes on the host hold {' or '.join(map(str, PER_CLIENT))} TCP "
        f"connections each to one listener in a test-made network namespace (veth). The "
        f"listener holds the other ends, so the host has twice the client sockets and each "
        f"scan returns a row per end from two namespaces. {SCANS} scans in a fresh "
        f"interpreter after one warm-up scan; wall time includes whatever else the machine "
        f"runs, CPU time does not.\n\n"
        f"{table(rows)}\n\n"
        f"Goal: ≤ {GOAL_MS:.0f} ms per scan (median wall) with ≥ 2,000 sockets across ≥ 50 "
        f"processes — {'; '.join(verdicts)}.\n"
    )


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"
