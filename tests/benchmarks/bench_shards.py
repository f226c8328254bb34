"""Benchmark: one fleet-wide detection run over 3 host shards × 3,000 hosts beside one node
× 9,000 hosts holding the same presence (issue 13).

Stores are built as in bench_detect.py (replicated_fleet.py): a real 200-host, 14-day simulation, folded,
replicated under new host names (45 copies on the node; copies 0–14, 15–29, 30–44 on
the three shards, so the shards' hosts are disjoint and their sums are the node's). Each
run is a fresh process at the last run time of the data that raises signals:
`detect_once` on the node; `detect_sharded` over the shards' stores in the same process
(the merge itself); and over three real `rarenet serve` processes with
`[detect] role = "shard"` on loopback (`POST /v1/shard`, as deployed; the shards share
this machine's 2 cores with the detection node). The sharded runs must store exactly the
node's signals (ids and scores).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import orjson
from replicated_fleet import base_store, replicate
from report import table, write_section

from rarenet.baseline.config import load_config
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.store import Store
from rarenet.baseline.store.health import WHOLE_CHECK_MAX_BYTES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.serve_process import SHARD_TOKEN, ServerProcess

# Read at import: the suite's autouse fixture clears RARENET_* variables before each test.
SHARDS = 3
SHARD_COPIES = int(os.environ.get("RARENET_BENCH_SHARD_COPIES", "15"))  # 3 × 3,000 hosts
BASE_HOSTS = 200
REPEATS = 3

RUN = """
import sys, time, orjson
from rarenet.baseline.config import load_config
from rarenet.baseline.detect.remote import RemoteSource
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.detect.shards import detect_sharded
from rarenet.baseline.detect.source import LocalSource
from rarenet.baseline.store import Store
mode, coordinator, at, shards = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
settings = load_config(None, env={}).detect
store = Store(coordinator)
if mode == "local":
    sources = [LocalSource(Store(path), f"shard-{k}") for k, path in enumerate(shards)]
else:
    sources = [RemoteSource(url, sys.stdin.readline().strip(), f"shard-{k}")
               for k, url in enumerate(shards)]
started, cpu = time.perf_counter(), time.process_time()
if mode == "node":
    run = detect_once(store, settings, at)
else:
    run = detect_sharded(store, sources, settings, at)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
rss = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024
print(orjson.dumps({'run': run.as_json()['run'], 'seconds': seconds, 'cpu': cpu,
                    'rss': rss}).decode())
"""


def one_run(mode: str, coordinator: Path, at: int, shards: list[str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN, mode, str(coordinator), str(at), *shards],
        input=(SHARD_TOKEN + "\n") * len(shards),
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, object] = orjson.loads(proc.stdout)
    return result


def stored(db: Path) -> dict[str, float]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, score FROM signals").fetchall())


def wait_for_check(server: ServerProcess, timeout: float = 1200) -> None:
    """The shard's background quick_check of its large store, done before measuring (a
    small store is checked whole before it serves)."""
    if server.db.stat().st_size <= WHOLE_CHECK_MAX_BYTES:
        return
    deadline = time.monotonic() + timeout
    while "store check:" not in server.output():
        assert time.monotonic() < deadline, server.output()[-2000:]
        time.sleep(2)


def signalling_time(base: Path, end: int) -> int:
    """The last run time of the base fleet's final day that raises signals (at the very
    end of the data nothing does, and equal empty results would prove little). The runs
    leave signals and run records in the base store, which `replicate` does not copy."""
    settings = load_config(None, env={}).detect
    interval = int(settings.interval)
    found = None
    with Store(base) as store:
        for at in range((end - 86400) // interval * interval, end + 1, interval):
            if detect_once(store, settings, at).signals:
                found = at
    assert found is not None, "the base fleet should raise a signal on its last day"
    return found


def test_sharded_detection_run(tmp_path: Path) -> None:
    base, end, _ = base_store(tmp_path)
    end = signalling_time(base, end)
    node = tmp_path / "node.db"
    node_presence = replicate(base, node, SHARDS * SHARD_COPIES)
    shard_dbs = []
    for k in range(SHARDS):
        workdir = tmp_path / f"shard-{k}"
        workdir.mkdir()
        shard_dbs.append(workdir / "rarenet.db")  # where ServerProcess(workdir) keeps it
        replicate(base, shard_dbs[-1], SHARD_COPIES, first_copy=k * SHARD_COPIES)
    rows = [
        [
            "layout",
            "candidates",
            "signals",
            "run s (median)",
            "min–max s",
            "detection node CPU s",
            "detection node peak RSS MiB",
        ]
    ]
    results: dict[str, dict[str, float]] = {}

    def measure(label: str, mode: str, coordinator: Path, shards: list[str]) -> None:
        runs = [one_run(mode, coordinator, end, shards) for _ in range(REPEATS)]
        walls = sorted(float(r["seconds"]) for r in runs)  # type: ignore[arg-type]
        cpus = sorted(float(r["cpu"]) for r in runs)  # type: ignore[arg-type]
        first = runs[0]["run"]
        assert isinstance(first, dict) and first["shards_down"] == []
        rows.append(
            [
                label,
                f"{first['candidates']:,}",
                f"{first['signals']}",
                f"{walls[len(walls) // 2]:.2f}",
                f"{walls[0]:.2f}–{walls[-1]:.2f}",
                f"{cpus[len(cpus) // 2]:.2f}",
                f"{max(float(r['rss']) for r in runs):.0f}",  # type: ignore[arg-type]
            ]
        )
        results[label] = stored(coordinator)

    hosts = BASE_HOSTS * SHARDS * SHARD_COPIES
    per_shard = BASE_HOSTS * SHARD_COPIES
    node_label = f"1 node × {hosts:,} hosts"
    measure(node_label, "node", node, [])
    in_process = f"{SHARDS} shards × {per_shard:,} hosts, in one process"
    measure(in_process, "local", tmp_path / "merge.db", [str(db) for db in shard_dbs])
    over_http = f"{SHARDS} shards × {per_shard:,} hosts, over HTTP"
    with ExitStack() as stack:
        servers = [
            stack.enter_context(
                ServerProcess(
                    db.parent,
                    extra_toml='[detect]\nrole = "shard"\n',
                    max_body="16MiB",
                    scoped=True,
                )
            )
            for db in shard_dbs
        ]
        for server in servers:
            wait_for_check(server)
        measure(over_http, "http", tmp_path / "http.db", [server.url for server in servers])
        shard_rss = [server.peak_rss_mib() for server in servers]
    assert results[node_label], "the run should raise signals to compare"
    assert results[in_process] == results[node_label]  # the same signals, ids and scores
    assert results[over_http] == results[node_label]
    body = [
        f"Base: a {BASE_HOSTS}-host, 14-day simulation, folded and replicated "
        f"({node_presence:,} presence rows on the node; a third on each shard). "
        f"{REPEATS} runs per layout at the last run time of the data that raises signals, each in a fresh process; the "
        "first stores the signals, later ones find them stored. Every layout stored "
        "exactly the node's signals (ids and scores).",
        "",
        table(rows),
        "",
        "Over HTTP the three shard servers run on the same 2 cores as the detection node "
        f"(peak RSS per shard server {', '.join(f'{r:.0f}' for r in shard_rss)} MiB, "
        "start-up and the store check included). On separate machines each shard's part "
        "runs in parallel; here it is serialised per question and the run is bounded by "
        "the slowest shard plus the merge.",
    ]
    write_section("shards", "\n".join(body))
