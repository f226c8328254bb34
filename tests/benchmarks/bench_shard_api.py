"""Benchmark: what one `POST /v1/shard` request can cost a shard (issue 30).

A shard's `rarenet serve` answers a detection node's questions. The request body is
limited (64 MiB), parsed and checked off the event loop, and every argument bounded
(baseline/serve/shard_args.py). Measured on a real shard process: the largest legal
question (a million observation ids, `first_remotes`), a body over the limit, and a
malformed one — wall time, the shard's peak RSS, and `/healthz` answering meanwhile.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import orjson
import requests
from report import table, write_section

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.serve_process import SHARD_TOKEN, ServerProcess

AUTH = {"Authorization": f"Bearer {SHARD_TOKEN}"}


def _healthz_worst(url: str, stop: threading.Event, worst: list[float]) -> None:
    """The slowest /healthz answer while a request is being handled."""
    while not stop.is_set():
        started = time.perf_counter()
        requests.get(f"{url}/healthz", timeout=120)
        worst[0] = max(worst[0], time.perf_counter() - started)
        time.sleep(0.05)


def test_shard_requests_are_bounded(tmp_path: Path) -> None:
    cases = [
        ("largest legal question: first_remotes, 1,000,000 ids", orjson.dumps(
            {"op": "first_remotes", "args": {"first_ids": list(range(1_000_000))}})),
        ("over the limit: 200 MiB", b'{"op":"detail","args":{"first_id":' + b" " * (200 << 20) + b"1}}"),
        ("malformed: 60 MiB of one string", orjson.dumps(
            {"op": "detail", "args": {"first_id": "x" * (60 << 20)}})),
        ("slow: hosts_in_bucket, 1,000,000 keys (stopped at shard_timeout = 2 s)", orjson.dumps(
            {"op": "hosts_in_bucket", "args": {"span": 900, "keys": [
                ["path", f"/usr/bin/x{i}", 1_767_571_200] for i in range(1_000_000)]}})),
    ]  # fmt: skip
    rows = [["request", "body MiB", "status", "wall s", "shard peak RSS MiB", "slowest /healthz s"]]
    shard = '[detect]\nrole = "shard"\nshard_timeout = "2s"\n'
    with ServerProcess(tmp_path, extra_toml=shard, scoped=True) as server:
        assert server.proc is not None
        for label, body in cases:
            stop, worst = threading.Event(), [0.0]
            watcher = threading.Thread(target=_healthz_worst, args=(server.url, stop, worst))
            watcher.start()
            started = time.perf_counter()
            answer = requests.post(f"{server.url}/v1/shard", data=body, headers=AUTH, timeout=300)
            wall = time.perf_counter() - started
            stop.set()
            watcher.join()
            with open(f"/proc/{server.proc.pid}/status") as status:
                peak = int(status.read().split("VmHWM:")[1].split()[0]) / 1024
            rows.append([label, f"{len(body) / (1 << 20):.0f}", str(answer.status_code),
                         f"{wall:.2f}", f"{peak:.0f}", f"{worst[0]:.2f}"])  # fmt: skip
            assert server.get("/healthz").status_code == 200
    body = (
        'One shard (`rarenet serve`, `[detect] role = "shard"`) on an empty store, asked '
        "over loopback with the shard secret; peak RSS is the shard process's VmHWM after "
        "each request (it only grows), the slowest /healthz is polled every 50 ms meanwhile.\n\n"
        + table(rows)
        + "\n\nBounds: body ≤ 64 MiB (refused while it streams in), lists ≤ 1,000,000 items, "
        "strings ≤ 8 KiB, windows ≤ history + 30 days, the shard's own span and history; a "
        "bad request is a 400 that never touches the store; a question's SQL stops at "
        "`[detect] shard_timeout` (a 503; 2 s here, 120 s by default) and at most two are "
        "worked on at once."
    )
    write_section("shard API", body)
    print(table(rows))
