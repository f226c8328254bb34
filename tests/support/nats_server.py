"""Real `nats-server` processes (Debian's package) with JetStream on loopback ports: one
server, or a 3-node cluster; and a publisher that sends osquery result logs the way
Fleet's `nats` destination does (one message per log, JetStream publish with ack)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path

import nats
from nats.js.api import StreamConfig

from support.osquery_lines import event, line, socket_row


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_binary() -> str:
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if not found:
        raise AssertionError("nats-server is not installed: `make test` installs it")
    return found


class NatsNode:
    """One nats-server with JetStream, its own store directory and config file."""

    def __init__(self, workdir: Path, name: str, *, cluster_port: int | None = None,
                 routes: Iterable[int] = (), extra: Iterable[str] = ()) -> None:  # fmt: skip
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.store = workdir / f"js-{name}"
        self.conf = workdir / f"{name}.conf"
        lines = [
            f'server_name: "{name}"',
            f"listen: 127.0.0.1:{self.port}",
            "max_payload: 16MB",
            f'jetstream {{ store_dir: "{self.store}", max_memory_store: 256MB, max_file_store: 2GB }}',
        ]
        lines += list(extra)  # e.g. the subject mapping that partitions hosts
        if cluster_port is not None:
            route_list = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
            lines.append(
                f'cluster {{ name: "rarenet-test", listen: 127.0.0.1:{cluster_port}, routes: [{route_list}] }}'
            )
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsNode:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [nats_binary(), "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"nats-server {self.name} did not start: {self.log.read_text()}"
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class Cluster:
    """`size` nodes routed to each other (one node: a plain server)."""

    def __init__(self, workdir: Path, size: int = 1, extra: Iterable[str] = ()) -> None:
        cluster_ports = [free_port() for _ in range(size)] if size > 1 else []
        self.nodes = [
            NatsNode(
                workdir,
                f"n{i}",
                cluster_port=cluster_ports[i] if size > 1 else None,
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
                extra=extra,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def __enter__(self) -> Cluster:
        for node in self.nodes:
            node.start()
        asyncio.run(_wait_for_jetstream(self.urls))
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.stop()


async def _wait_for_jetstream(urls: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            nc = await nats.connect(servers=urls, connect_timeout=2)
            try:
                await nc.jetstream().account_info()
                return
            finally:
                await nc.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def add_stream(urls: list[str], name: str, subjects: list[str], replicas: int = 1) -> None:
    nc = await nats.connect(servers=urls)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 30
        while True:
            try:
                await js.add_stream(
                    StreamConfig(
                        name=name, subjects=subjects, num_replicas=replicas, max_msg_size=16 << 20
                    )
                )
                return
            except Exception:  # the cluster may still be electing its meta leader
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


async def publish(urls: list[str], messages: Iterable[tuple[str, bytes]], *,
                  budget_s: float = 180.0) -> list[int]:  # fmt: skip
    """Publish like Fleet with JetStream on: each message waits for its publish ack (a
    failed publish is retried, as a sender that wants no loss must, for up to `budget_s`
    per message: a killed node's streams elect a new leader within seconds, but a loaded
    2-core machine can take much longer). Returns the stream sequence of every
    acknowledged message."""
    nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    sequences: list[int] = []
    try:
        js = nc.jetstream()
        for subject, data in messages:
            give_up = time.monotonic() + budget_s
            while True:
                try:
                    # Nats-Msg-Id: a retried publish that did land is dropped by the stream
                    ack = await js.publish(
                        subject,
                        data,
                        timeout=2,
                        headers={"Nats-Msg-Id": hashlib.sha256(data).hexdigest()},
                    )
                    sequences.append(int(ack.seq))
                    break
                except (Exception, asyncio.CancelledError):
                    # during failover nats-py can surface a cancelled request future as
                    # CancelledError (not an Exception); the task itself is not cancelled
                    if time.monotonic() > give_up:
                        raise
                    await asyncio.sleep(0.25)
    finally:
        await nc.close()
    return sequences


async def consumer_state(urls: list[str], stream: str, durable: str) -> tuple[int, int]:
    """(messages not yet delivered, delivered but unacknowledged) of a durable consumer."""
    nc = await nats.connect(servers=urls)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)
    finally:
        await nc.close()


def stored_rows(conn: sqlite3.Connection) -> set[tuple[object, ...]]:
    """What a consumer stored: each observation's identifying columns, none doubled."""
    found = conn.execute(
        "SELECT time, digest, host, path, remote_address, remote_port FROM observations"
    ).fetchall()
    assert len(found) == len(set(found))
    return set(found)


def stored_count(db: Path) -> int:
    """Observations in a store another process is writing (0 while it does not exist)."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(db, timeout=5)) as conn:
            return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def wait_until(condition: Callable[[], bool], timeout: float = 120) -> None:
    """Poll `condition` every 0.1 s; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


SUBJECTS = ["osquery.result.>"]  # what Fleet publishes into
FLEET_T0 = 1_767_225_600  # 2026-01-01: the data time of fleet_lines()' first log


def fleet_lines(count: int, hosts: int = 20) -> list[tuple[str, bytes]]:
    """`count` result logs, as Fleet publishes them: subject osquery.result.<host>."""
    out = []
    for i in range(count):
        host = f"host-{i % hosts:02d}"
        row = socket_row(
            pid=1000 + i % 50,
            name="curl" if i % 3 else "nginx",
            path="/usr/bin/curl" if i % 3 else "/usr/sbin/nginx",
            remote_address=f"198.51.100.{i % 200}",
            remote_port=str(1024 + i % 5000),
        )
        out.append(
            (f"osquery.result.{host}", line(event(row, host=host, unix=FLEET_T0 + i)).rstrip())
        )
    return out
