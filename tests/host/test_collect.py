"""`rarenet collect`: this host's sockets from /proc into the store, differentially."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import orjson
from click.testing import CliRunner
from support.netns import (
    Child,
    VethNamespace,
    holder_argv,
)

from rarenet.baseline.cli import main
from rarenet.baseline.collect import Collector, local_host_id, local_host_uuid
from rarenet.baseline.ingest.normalise import Normaliser
from rarenet.baseline.store import Store


def connect_udp(kids: list[Child], veth_ns: VethNamespace, port: int) -> int:
    spec = {
        "sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": port, "udp": True}],
        "comm": "rn-beacon",
    }
    child = Child(holder_argv(spec))
    kids.append(child)
    return int(child.line()["pid"])


def test_local_host_id_prefers_config_then_the_hostname(tmp_path: Path) -> None:
    """The console names this host as a person does (its hostname, osquery's default),
    not by its machine-id hash; the machine-id is kept as its lasting id."""
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef\n")
    assert local_host_id("db-7", machine_id) == "db-7"
    assert local_host_id("", machine_id) == socket.gethostname()
    assert local_host_uuid(machine_id) == "0123456789abcdef"
    assert local_host_uuid(tmp_path / "missing") == ""


def test_collector_stores_new_sockets_once(
    tmp_path: Path, veth_ns: VethNamespace, kids: list[Child]
) -> None:
    first_pid = connect_udp(kids, veth_ns, 5301)
    with Store(tmp_path / "r.db") as store:
        collector = Collector(store, Normaliser(), host="test-host")
        _, stored = collector.collect_once(now=1767571200)
        rows = store.conn.execute(
            "SELECT host, time, name, pid, remote_address, remote_port, protocol, direction, query FROM observations WHERE pid = ?",
            (first_pid,),
        ).fetchall()
        assert rows == [
            (
                "test-host",
                1767571200,
                "rn-beacon",
                first_pid,
                veth_ns.ns_v4,
                5301,
                17,
                "outbound",
                "rarenet_open_sockets",
            )
        ]
        assert stored >= 1
        collector.collect_once(now=1767571260)  # our socket is not new any more
        ours = store.conn.execute(
            "SELECT count(*) FROM observations WHERE pid = ?", (first_pid,)
        ).fetchone()[0]
        assert ours == 1
        second_pid = connect_udp(kids, veth_ns, 5302)
        collector.collect_once(now=1767571320)
        assert store.conn.execute(
            "SELECT time FROM observations WHERE pid = ?", (second_pid,)
        ).fetchall() == [(1767571320,)]


def test_collector_stores_a_process_with_non_utf8_cwd_and_name(
    tmp_path: Path, veth_ns: VethNamespace, kids: list[Child]
) -> None:
    base = os.fsencode(os.path.realpath(tmp_path))
    cwd = base + b"/bad\xff\xfedir"
    os.mkdir(cwd)
    python = base + b"/rn\xff\xfe"  # the child's comm is the name it was run through
    os.symlink(os.path.realpath(sys.executable), python)
    spec = {"sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": 5304, "udp": True}]}
    child = Child([python, *holder_argv(spec)[1:]], cwd=cwd)
    kids.append(child)
    pid = int(child.line()["pid"])
    with Store(tmp_path / "r.db") as store:
        _, stored = Collector(store, Normaliser(), host="test-host").collect_once(now=1767571200)
        rows = store.conn.execute(
            "SELECT name, cwd, cmdline, remote_port FROM observations WHERE pid = ?", (pid,)
        ).fetchall()
    assert stored >= 1
    assert len(rows) == 1
    name, stored_cwd, cmdline, port = rows[0]
    assert (name, port) == ("rn\ufffd\ufffd", 5304)
    assert stored_cwd == os.fsdecode(base) + "/bad\ufffd\ufffddir"
    assert "\ufffd" in cmdline


def test_collect_command_once(tmp_path: Path, veth_ns: VethNamespace, kids: list[Child]) -> None:
    pid = connect_udp(kids, veth_ns, 5303)
    config = tmp_path / "rarenet.toml"
    config.write_text('[collect]\nhost_id = "bastion-9"\n')
    result = CliRunner().invoke(
        main,
        ["collect", "--once", "--json", "--config", str(config), "--db", str(tmp_path / "r.db")],
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["host"] == "bastion-9" and report["scans"] == 1 and report["observations"] >= 1
    with Store(tmp_path / "r.db") as store:
        assert store.conn.execute(
            "SELECT host FROM observations WHERE pid = ?", (pid,)
        ).fetchall() == [("bastion-9",)]


def test_collect_rejects_a_bad_interval(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["collect", "--interval", "soon", "--db", str(tmp_path / "r.db")]
    )
    assert result.exit_code == 2 and "--interval: 'soon' is not a duration" in result.stderr
