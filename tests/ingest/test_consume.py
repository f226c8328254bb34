"""`rarenet consume` against real nats-server processes: Fleet-shaped messages (one raw
osquery log each, JetStream publish) end in the store exactly once; poison messages are
quarantined with their stream sequence and acked; a consumer killed mid-batch and
restarted leaves exactly the rows of an uninterrupted run; a 3-node R3 cluster losing a
node during publishing and consumption loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from support.nats_server import (
    SUBJECTS,
    Cluster,
    add_stream,
    consumer_state,
    fleet_lines,
    publish,
    stored_count,
    stored_rows,
    wait_until,
)
from support.serve_process import ServerProcess

from rarenet.baseline.config import load_config
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.store import Store

pytestmark = pytest.mark.slow

STREAM = "OSQUERY"


def reference_rows(tmp_path: Path, messages: list[tuple[str, bytes]]) -> set[tuple[object, ...]]:
    """The rows `rarenet ingest` stores from the same logs as a file (uninterrupted)."""
    log = tmp_path / "reference.log"
    log.write_bytes(b"".join(data + b"\n" for _, data in messages))
    with Store(tmp_path / "reference.db") as store:
        Ingester(store, load_config(None, env={})).ingest([str(log)])
        return stored_rows(store.conn)


def consume_cmd(db: Path, urls: list[str], *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "rarenet", "consume", *urls, "--stream", STREAM,
        "--db", str(db), "--ack-wait", "3s", *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}


def test_fleet_messages_are_stored_once_and_poison_is_quarantined(tmp_path: Path) -> None:
    messages = fleet_lines(3000)
    poison = [
        ("osquery.result.host-01", b"this is not json {"),
        ("osquery.result.host-02", b'{"name": "pack/x/rarenet_open_sockets", "columns": 7}'),
        ("osquery.result.host-03", b"x" * (10 * 1024 * 1024)),  # 10 MB
        (
            "osquery.result.host-04",
            b'{"name":"rarenet_open_sockets","hostIdentifier":"h","unixTime":"soon","action":"added","columns":{"pid":"x"}}',
        ),
    ]
    db = tmp_path / "rarenet.db"
    with Cluster(tmp_path) as cluster:
        asyncio.run(add_stream(cluster.urls, STREAM, SUBJECTS))
        sequences = asyncio.run(
            publish(cluster.urls, [*messages[:1500], *poison, *messages[1500:]])
        )
        poison_seqs = sequences[1500:1504]
        config = tmp_path / "rarenet.toml"
        config.write_text('[ingest]\nmax_body = "1MiB"\n')
        done = subprocess.run(
            [*consume_cmd(db, cluster.urls, "--idle-exit", "2", "--json", "--batch", "400"),
             "--config", str(config)],
            capture_output=True, timeout=180, env=env(), cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        report = orjson.loads(done.stdout)
        assert report["messages"] == 3004 and report["quarantined"] == 4
        assert asyncio.run(consumer_state(cluster.urls, STREAM, "rarenet")) == (0, 0)  # all acked
        again = subprocess.run(
            [*consume_cmd(db, cluster.urls, "--idle-exit", "1", "--json"), "--config", str(config)],
            capture_output=True, timeout=120, env=env(), cwd=tmp_path, check=True,
        )  # fmt: skip
        assert orjson.loads(again.stdout)["messages"] == 0  # nothing redelivered
    with sqlite3.connect(db) as conn:
        assert stored_rows(conn) == reference_rows(tmp_path, messages)
        quarantined = conn.execute(
            "SELECT line, reason, raw_size FROM quarantine WHERE source = ? ORDER BY line",
            (f"nats:{STREAM}",),
        ).fetchall()
    assert [q[0] for q in quarantined] == poison_seqs  # named by stream sequence
    assert "not valid JSON" in quarantined[0][1] and "over the" in quarantined[2][1]
    assert quarantined[2][2] == 10 * 1024 * 1024


def test_a_consumer_killed_mid_batch_resumes_exactly(tmp_path: Path) -> None:
    messages = fleet_lines(30_000, hosts=50)
    db = tmp_path / "rarenet.db"
    with Cluster(tmp_path) as cluster:
        asyncio.run(add_stream(cluster.urls, STREAM, SUBJECTS))
        asyncio.run(publish(cluster.urls, messages))
        for kill_at in (4000, 15000):  # two crashes, then a clean finish
            proc = subprocess.Popen(
                consume_cmd(db, cluster.urls, "--batch", "500"), env=env(), cwd=tmp_path,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 120
            while stored_count(db) < kill_at:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        done = subprocess.run(
            consume_cmd(db, cluster.urls, "--idle-exit", "2", "--json"),
            capture_output=True, timeout=300, env=env(), cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert asyncio.run(consumer_state(cluster.urls, STREAM, "rarenet")) == (0, 0)
    with sqlite3.connect(db) as conn:
        assert stored_rows(conn) == reference_rows(tmp_path, messages)


def test_a_cluster_node_killed_during_publishing_and_consumption_loses_nothing(
    tmp_path: Path,
) -> None:
    messages = fleet_lines(12_000, hosts=40)
    db = tmp_path / "rarenet.db"
    with Cluster(tmp_path, size=3) as cluster:
        asyncio.run(add_stream(cluster.urls, STREAM, SUBJECTS, replicas=3))
        acked: list[int] = []
        failed: list[BaseException] = []

        def publish_all() -> None:
            try:
                acked.extend(asyncio.run(publish(cluster.urls, messages)))
            except BaseException as exc:  # reported by the assertion below, with its type
                failed.append(exc)

        publisher = threading.Thread(target=publish_all, daemon=True)
        publisher.start()
        with (tmp_path / "consumer.err").open("wb") as err:  # a file: a pipe nobody reads fills up
            consumer = subprocess.Popen(
                consume_cmd(db, cluster.urls, "--batch", "300"), env=env(), cwd=tmp_path,
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while stored_count(db) < 2000:
                assert consumer.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            cluster.nodes[0].kill()  # mid-publishing and mid-consumption
            publisher.join(timeout=240)
            assert not failed, repr(failed)
            assert not publisher.is_alive() and len(acked) == len(messages)
            while stored_count(db) < len(messages) and time.monotonic() < deadline + 180:
                assert consumer.poll() is None
                time.sleep(0.1)
            consumer.send_signal(signal.SIGTERM)  # finishes its batch and stops
            assert consumer.wait(timeout=60) == 0, (tmp_path / "consumer.err").read_text()
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait(timeout=30)
    with sqlite3.connect(db) as conn:
        assert stored_rows(conn) == reference_rows(tmp_path, messages)


def test_serve_consumes_the_stream_and_catches_up_after_a_restart(tmp_path: Path) -> None:
    messages = fleet_lines(4000, hosts=30)
    with Cluster(tmp_path) as cluster:
        asyncio.run(add_stream(cluster.urls, STREAM, SUBJECTS))
        nats_toml = (
            f'[nats]\nservers = ["{cluster.urls[0]}"]\nstream = "{STREAM}"\n'
            'subject = "osquery.result.>"\nack_wait = "3s"\nbatch = 250\n'
        )
        (tmp_path / "serve").mkdir()
        server = ServerProcess(tmp_path / "serve", extra_toml=nats_toml)
        with server:
            asyncio.run(publish(cluster.urls, messages[:2500]))
            wait_until(lambda: stored_count(server.db) == 2500)
            assert server.stop() == 0  # SIGTERM: the batch in hand is committed and acked
        asyncio.run(publish(cluster.urls, messages[2500:]))  # while rarenet is down
        assert asyncio.run(consumer_state(cluster.urls, STREAM, "rarenet")) == (1500, 0)
        server.start()
        try:
            wait_until(lambda: stored_count(server.db) == 4000)  # the backlog, held by the stream
            assert "consuming JetStream stream OSQUERY" in server.output()
        finally:
            server.stop()
    with sqlite3.connect(server.db) as conn:
        assert stored_rows(conn) == reference_rows(tmp_path, messages)
