"""A NATS source that is down is visible and never holds rarenet hostage (issue 30):
`rarenet consume` retries quietly (a line per change, no traceback), exits 3 when no
server answers within --connect-timeout or the stream does not exist, and stops at once
on SIGTERM while connecting; `serve` names a down server or a missing stream on
/healthz (503) and stops within seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.deliver_receiver import refused_port
from support.nats_server import Cluster, add_stream, wait_until
from support.serve_process import ServerProcess

pytestmark = pytest.mark.slow
RARENET = [sys.executable, "-m", "rarenet"]


def consume(db: Path, server: str, *extra: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}
    return subprocess.Popen(
        [*RARENET, "consume", server, "--stream", "OSQUERY", "--db", str(db), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ,
    )  # fmt: skip


def test_consume_gives_up_on_a_dead_server_quietly_with_exit_3(tmp_path: Path) -> None:
    started = time.monotonic()
    job = consume(
        tmp_path / "a.db", f"nats://127.0.0.1:{refused_port()}", "--connect-timeout", "3s"
    )
    out, _ = job.communicate(timeout=60)
    assert job.returncode == 3, out
    assert time.monotonic() - started < 15
    assert "cannot connect to nats://127.0.0.1:" in out and "within 3 s" in out, out
    assert "ConnectionRefusedError" in out and "Traceback" not in out, out
    assert len(out.splitlines()) <= 6, out


def test_consume_stops_at_once_on_sigterm_while_it_cannot_connect(tmp_path: Path) -> None:
    job = consume(tmp_path / "a.db", f"nats://127.0.0.1:{refused_port()}")
    time.sleep(2)
    job.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    out, _ = job.communicate(timeout=30)
    assert time.monotonic() - stopped < 5, out
    assert job.returncode == 0, out
    assert "Traceback" not in out and len(out.splitlines()) <= 6, out


def test_a_missing_stream_is_named_by_consume_and_by_serves_health(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        job = consume(tmp_path / "a.db", cluster.urls[0], "--connect-timeout", "10s")
        out, _ = job.communicate(timeout=60)
        assert job.returncode == 3, out
        assert "stream 'OSQUERY' does not exist" in out and "Traceback" not in out, out
        (tmp_path / "serve").mkdir()
        nats = f'[nats]\nservers = ["{cluster.urls[0]}"]\nstream = "OSQUERY"\n'
        with ServerProcess(tmp_path / "serve", extra_toml=nats) as server:
            wait_until(lambda: server.get("/healthz").status_code == 503, timeout=30)
            (part,) = [
                f for f in server.get("/healthz").json()["failures"] if f["part"] == "stream"
            ]
            assert "stream 'OSQUERY' does not exist" in part["reason"], part
            asyncio.run(_add_stream(cluster.urls))
            wait_until(lambda: server.get("/healthz").status_code == 200, timeout=30)


async def _add_stream(urls: list[str]) -> None:
    await add_stream(urls, "OSQUERY", ["osquery.result.>"])


def test_serve_with_its_nats_server_down_is_unhealthy_quiet_and_stops_in_seconds(
    tmp_path: Path,
) -> None:
    nats = f'[nats]\nservers = ["nats://127.0.0.1:{refused_port()}"]\nstream = "OSQUERY"\n'
    server = ServerProcess(tmp_path, extra_toml=nats)
    with server:
        wait_until(lambda: server.get("/healthz").status_code == 503, timeout=30)
        (part,) = [f for f in server.get("/healthz").json()["failures"] if f["part"] == "stream"]
        assert "ConnectionRefusedError" in part["reason"], part
        time.sleep(10)  # retrying all along
        output = server.output()
        assert "Traceback" not in output, output[-2000:]
        assert output.count("NATS nats://") + output.count("JetStream consumer failed") <= 6, output
        stopped = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - stopped < 10
