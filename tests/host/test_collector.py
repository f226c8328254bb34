"""The /proc socket collector against real processes and sockets (no mocks).

Traffic only goes to loopback or to a network namespace the tests create (tests/support/netns.py);
the namespace tests are skipped when this machine cannot make one (not root, no `ip`).
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.netns import (
    Child,
    VethNamespace,
    holder_argv,
    wait_until,
)

from rarenet.extension.collector import COLUMNS, SocketRow, is_remote_peer, scan
from rarenet.extension.proc_net import SocketIndex, decode_address, parse_table, read_table
from rarenet.extension.proc_pid import utf8_text

HOST_NS = os.stat("/proc/self/ns/net").st_ino


def start(kids: list[Child], argv: Sequence[str | bytes], **popen: Any) -> tuple[Child, Any]:
    """Start a child, wait for its first JSON line; return both."""
    child = Child(argv, **popen)
    kids.append(child)
    return child, child.line()


@pytest.fixture
def server(veth_ns: VethNamespace, kids: list[Child]) -> tuple[Child, int, int]:
    """A listener inside the namespace on its IPv4 and IPv6 address: (child, port4, port6)."""
    spec = {
        "sockets": [
            {"op": "listen", "host": veth_ns.ns_v4},
            {"op": "listen", "host": veth_ns.ns_v6},
        ],
        "report_accepts": True,
    }
    child, ready = start(kids, veth_ns.exec_argv(holder_argv(spec)))
    assert ready["pid"] == child.pid  # `ip netns exec` execs: the child is the server
    return child, ready["sockets"][0]["laddr"][1], ready["sockets"][1]["laddr"][1]


def accepted(server: Child, client_port: int) -> dict[str, Any]:
    """The server's report of the connection from `client_port` (skips other reports)."""
    deadline = time.monotonic() + 10
    for _ in range(50):
        report: dict[str, Any] = server.line(timeout=max(deadline - time.monotonic(), 0.01))
        if report["raddr"][1] == client_port:
            return report
    raise AssertionError(f"the server never accepted a connection from port {client_port}")


def rows_of(pid: int, rows: list[SocketRow] | None = None) -> dict[int, SocketRow]:
    """fd → row for `pid` (from a fresh scan unless `rows` is given)."""
    found = [row for row in (scan() if rows is None else rows) if row.pid == pid]
    by_fd = {row.fd: row for row in found}
    assert len(by_fd) == len(found), "one row per (pid, fd)"
    return by_fd


def socket_count(pid: int) -> int:
    """Socket descriptors of `pid` (psutil only sees sockets of its own namespace)."""
    fd_dir = f"/proc/{pid}/fd"
    return sum(os.readlink(f"{fd_dir}/{fd}").startswith("socket:") for fd in os.listdir(fd_dir))


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")


def exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:  # a kernel thread, or not ours to read: the collector says ""
        return ""


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip().decode()


def ppid(pid: int) -> int:
    return int(psutil.Process(pid).ppid())


def lineage(parent: int) -> dict[str, Any]:
    """The ancestor columns of a row whose process's parent is `parent` (its name … the
    great-grandparent's cmdline): "" and -1 above pid 0, as the query's LEFT JOINs."""
    found: dict[str, Any] = {}
    pid = parent
    for level in ("parent", "grandparent", "great_grandparent"):
        if level != "parent":
            found[level] = pid
        alive = pid > 0 and os.path.exists(f"/proc/{pid}")
        found[f"{level}_name"] = comm(pid) if alive else ""
        found[f"{level}_path"] = exe(pid) if alive else ""
        found[f"{level}_cmdline"] = cmdline(pid) if alive else ""
        pid = ppid(pid) if alive else -1
    return found


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def test_tcp_client_and_server_rows(
    veth_ns: VethNamespace, server: tuple[Child, int, int], kids: list[Child], tmp_path: Path
) -> None:
    srv, port4, _port6 = server
    argv = holder_argv({"sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": port4}]})
    client, ready = start(kids, argv, cwd=tmp_path)
    held = ready["sockets"][0]
    peer = accepted(srv, held["laddr"][1])
    rows = scan()

    row = rows_of(client.pid, rows)[held["fd"]]
    assert row == SocketRow(
        pid=client.pid,
        fd=held["fd"],
        socket=row.socket,
        family=2,
        protocol=6,
        local_address=veth_ns.host_v4,
        local_port=held["laddr"][1],
        remote_address=veth_ns.ns_v4,
        remote_port=port4,
        state="ESTABLISHED",
        net_namespace=HOST_NS,
        name=comm(client.pid),
        path=os.path.realpath(sys.executable),
        cmdline=" ".join(str(arg) for arg in argv).strip(),
        cwd=os.path.realpath(tmp_path),
        uid=os.getuid(),
        username=pwd.getpwuid(os.getuid()).pw_name,
        parent=os.getpid(),
        **lineage(os.getpid()),
        direction="outbound",
    )
    assert row.socket == int(os.readlink(f"/proc/{client.pid}/fd/{row.fd}")[8:-1])

    inbound = rows_of(srv.pid, rows)[peer["fd"]]
    assert (inbound.local_address, inbound.local_port) == (veth_ns.ns_v4, port4)
    assert (inbound.remote_address, inbound.remote_port) == (veth_ns.host_v4, held["laddr"][1])
    assert (inbound.state, inbound.direction) == ("ESTABLISHED", "inbound")
    assert inbound.net_namespace == veth_ns.inode != HOST_NS
    assert inbound.parent == os.getpid()


def test_connected_udp_socket(veth_ns: VethNamespace, kids: list[Child]) -> None:
    spec = {"sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": 5353, "udp": True}]}
    client, ready = start(kids, holder_argv(spec, b"caf\xe9 "))
    row = rows_of(client.pid)[ready["sockets"][0]["fd"]]
    assert (row.family, row.protocol, row.state) == (2, 17, "")
    assert (row.remote_address, row.remote_port) == (veth_ns.ns_v4, 5353)
    assert row.direction == "outbound"
    assert row.cmdline.endswith(" caf\ufffd")  # invalid UTF-8 replaced, trailing space trimmed


NOT_UTF8 = b"\xff\xfe"  # bytes no UTF-8 text contains


def held_udp(veth_ns: VethNamespace) -> dict[str, Any]:
    return {"sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": 9, "udp": True}]}


def assert_valid_utf8(row: SocketRow) -> None:
    """Every osquery column encodes as UTF-8: no surrogate escapes of undecodable bytes."""
    for column, value in row.as_osquery_row().items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise AssertionError(f"{column}={value!r} is not valid UTF-8") from exc


def test_non_utf8_cwd_and_name_are_replaced(
    veth_ns: VethNamespace, kids: list[Child], tmp_path: Path
) -> None:
    base = os.fsencode(os.path.realpath(tmp_path))
    cwd = base + b"/bad" + NOT_UTF8 + b"dir"
    os.mkdir(cwd)
    python = base + b"/rn" + NOT_UTF8  # run through this link, the process's comm is its name
    os.symlink(os.path.realpath(sys.executable), python)
    argv = [python, *holder_argv(held_udp(veth_ns))[1:]]
    client, ready = start(kids, argv, cwd=cwd)
    assert os.readlink(f"/proc/{client.pid}/cwd".encode()) == cwd

    row = rows_of(client.pid)[ready["sockets"][0]["fd"]]
    assert row.cwd == os.fsdecode(base) + "/bad\ufffd\ufffddir"
    assert row.name == "rn\ufffd\ufffd"
    assert row.path == os.path.realpath(sys.executable)
    assert row.cmdline.startswith(os.fsdecode(base) + "/rn\ufffd\ufffd -I -c ")
    assert_valid_utf8(row)


def test_non_utf8_executable_path_and_deleted_suffix(
    veth_ns: VethNamespace, kids: list[Child], tmp_path: Path
) -> None:
    python = os.fsencode(os.path.realpath(tmp_path)) + b"/py" + NOT_UTF8
    shutil.copy(os.fsencode(os.path.realpath(sys.executable)), python)
    try:
        client, ready = start(kids, [python, *holder_argv(held_udp(veth_ns))[1:]])
    except RuntimeError as exc:  # noexec tmp, or a libpython found relative to the binary
        pytest.skip(f"a copy of the interpreter cannot run from {tmp_path}: {exc}")
    fd = ready["sockets"][0]["fd"]
    expected = python.decode("utf-8", "replace")
    assert "\ufffd" in expected

    row = rows_of(client.pid)[fd]
    assert row.path == expected
    assert_valid_utf8(row)
    os.unlink(python)  # exe now reads "<path> (deleted)"; osquery drops the suffix ...
    assert os.readlink(f"/proc/{client.pid}/exe".encode()) == python + b" (deleted)"
    assert rows_of(client.pid)[fd].path == expected
    with open(python + b" (deleted)", "wb"):  # ... unless a file by that very name exists
        pass
    assert rows_of(client.pid)[fd].path == expected + " (deleted)"


def test_utf8_text_replaces_surrogate_escapes() -> None:
    assert utf8_text("caf\u00e9") == "caf\u00e9"
    assert utf8_text(os.fsdecode(b"svc" + NOT_UTF8)) == "svc\ufffd\ufffd"  # e.g. a pw_name
    assert utf8_text("x\ud800y").encode("utf-8").startswith(b"x\xef\xbf\xbd")


def test_ipv6_and_mapped_ipv4(
    veth_ns: VethNamespace, server: tuple[Child, int, int], kids: list[Child]
) -> None:
    srv, port4, port6 = server
    spec = {
        "sockets": [
            {"op": "connect", "host": veth_ns.ns_v6, "port": port6},
            {"op": "connect", "host": f"::ffff:{veth_ns.ns_v4}", "port": port4},
        ]
    }
    client, ready = start(kids, holder_argv(spec))
    v6, mapped = ready["sockets"]
    accepted(srv, v6["laddr"][1])
    rows = rows_of(client.pid)

    row = rows[v6["fd"]]
    assert (row.family, row.protocol, row.state) == (10, 6, "ESTABLISHED")
    assert (row.local_address, row.remote_address) == (veth_ns.host_v6, veth_ns.ns_v6)
    assert row.remote_address == str(ipaddress.IPv6Address(veth_ns.ns_v6))  # compressed
    assert "::" in row.remote_address and row.remote_port == port6

    row = rows[mapped["fd"]]
    assert row.family == 10
    assert row.remote_address == f"::ffff:{veth_ns.ns_v4}"
    assert row.local_address == f"::ffff:{veth_ns.host_v4}"


def test_process_of_another_user(veth_ns: VethNamespace, kids: list[Child]) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no `nobody` user on this machine")
    spec = {
        "user": "nobody",
        "sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": 9, "udp": True}],
    }
    client, ready = start(kids, holder_argv(spec))
    row = rows_of(client.pid)[ready["sockets"][0]["fd"]]
    assert (row.uid, row.username) == (nobody.pw_uid, "nobody")


def test_process_exiting_mid_scan(veth_ns: VethNamespace, kids: list[Child]) -> None:
    spec = {"sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": 9, "udp": True}]}
    doomed, _ = start(kids, holder_argv(spec))
    survivor, ready = start(kids, holder_argv(spec))
    listed: list[int] = []

    def vanish(pids: Sequence[int]) -> None:
        listed.extend(pids)
        doomed.proc.kill()
        doomed.proc.wait(5)  # reaped: /proc/<pid> is gone before its fds are read

    rows = scan(after_listing=vanish)
    assert doomed.pid in listed
    assert not [row for row in rows if row.pid == doomed.pid]
    assert ready["sockets"][0]["fd"] in rows_of(survivor.pid, rows)


CHURN = r"""
import os, socket, sys, time
host, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    pid = os.fork()
    if pid == 0:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((host, 9))
        time.sleep(0.001)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_scans_while_processes_come_and_go(veth_ns: VethNamespace) -> None:
    churn = Child([sys.executable, "-I", "-c", CHURN, veth_ns.ns_v4, "1.5"])
    try:
        deadline, scans = time.monotonic() + 3, 0
        while churn.proc.poll() is None and time.monotonic() < deadline and scans < 100:
            for row in scan():
                assert row.pid > 0 and row.remote_port != 0
            scans += 1
    finally:
        churn.stop()
    assert scans >= 3


SHARED = r"""
import json, os, socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect((sys.argv[1], 9))
copy = os.dup(sock.fileno())
child = os.fork()
if child == 0:
    sys.stdin.read()  # the parent's stdin: EOF when the test stops the parent
    os._exit(0)
print(json.dumps({"pids": [os.getpid(), child], "fds": [sock.fileno(), copy]}), flush=True)
sys.stdin.read()
os.waitpid(child, 0)
"""


def test_a_shared_socket_is_a_row_per_holder(veth_ns: VethNamespace, kids: list[Child]) -> None:
    _, ready = start(kids, [sys.executable, "-I", "-c", SHARED, veth_ns.ns_v4])
    rows = [row for row in scan() if row.pid in ready["pids"]]
    # osquery reports one (pid, fd) per socket (the last it meets); the collector reports
    # every descriptor of every process that holds it: two processes × two fds.
    holders = {(pid, fd) for pid in ready["pids"] for fd in ready["fds"]}
    assert {(row.pid, row.fd) for row in rows} == holders and len(rows) == 4
    assert len({row.socket for row in rows}) == 1
    parent, child = ready["pids"]
    by_pid = {row.pid: row for row in rows}
    assert (by_pid[child].parent, by_pid[child].parent_name) == (parent, by_pid[parent].name)
    assert by_pid[child].grandparent == os.getpid() == by_pid[parent].parent


@pytest.fixture
def reverse_shell(
    veth_ns: VethNamespace, server: tuple[Child, int, int]
) -> Iterator[tuple[str, str, int, int]]:
    """bash opens fd 3 to the namespace's listener (a loopback peer would be filtered out,
    as the pack query does), then runs sleep, which inherits fd 3; `true` after sleep
    keeps bash from exec'ing it. Yields (bash path, script, bash pid, sleep pid)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    script = 'exec 3<>"/dev/tcp/$0/$1"; sleep 30; true'
    argv = [bash, "-c", script, veth_ns.ns_v4, str(server[1])]
    shell = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_until(lambda: len(children_of(shell.pid)) == 1), "bash started no sleep"
        (sleeper,) = children_of(shell.pid)
        assert wait_until(lambda: comm(sleeper) == "sleep"), "the child never became sleep"
        yield bash, script, shell.pid, sleeper
    finally:
        os.killpg(shell.pid, signal.SIGKILL)  # bash and sleep: one session, one group
        shell.wait(10)


def test_a_shell_s_socket_inherited_by_sleep_is_a_row_for_each(
    veth_ns: VethNamespace,
    server: tuple[Child, int, int],
    reverse_shell: tuple[str, str, int, int],
) -> None:
    bash, script, bash_pid, sleep_pid = reverse_shell
    rows = [row for row in scan() if row.pid in (bash_pid, sleep_pid)]
    assert sorted((row.pid, row.fd) for row in rows) == [(bash_pid, 3), (sleep_pid, 3)]
    shell, sleeper = sorted(rows, key=lambda row: row.pid != bash_pid)
    assert shell.socket == sleeper.socket == int(os.readlink(f"/proc/{bash_pid}/fd/3")[8:-1])
    for row in rows:
        assert (row.remote_address, row.remote_port) == (veth_ns.ns_v4, server[1])
        assert (row.state, row.direction) == ("ESTABLISHED", "outbound")

    assert (sleeper.name, sleeper.path) == ("sleep", os.path.realpath(shutil.which("sleep") or ""))
    assert (sleeper.parent, sleeper.parent_name) == (bash_pid, "bash")
    assert sleeper.parent_path == os.path.realpath(bash)
    assert sleeper.parent_cmdline == f"{bash} -c {script} {veth_ns.ns_v4} {server[1]}"
    # above bash: this test's interpreter, then whatever started it
    assert (sleeper.grandparent, sleeper.grandparent_name) == (os.getpid(), comm(os.getpid()))
    assert sleeper.grandparent_path == os.path.realpath(sys.executable) == exe(os.getpid())
    assert sleeper.grandparent_cmdline == cmdline(os.getpid())
    assert (sleeper.great_grandparent, sleeper.great_grandparent_name) == (
        os.getppid(), comm(os.getppid()),
    )  # fmt: skip
    assert sleeper.great_grandparent_path == exe(os.getppid())
    assert sleeper.great_grandparent_cmdline == cmdline(os.getppid())

    assert (shell.name, shell.path, shell.cmdline) == (
        "bash", sleeper.parent_path, sleeper.parent_cmdline,
    )  # fmt: skip
    assert {column: getattr(shell, column) for column in COLUMNS[18:-1]} == lineage(os.getpid())
    assert shell.parent == os.getpid()


def test_local_and_listening_sockets_give_no_rows(
    veth_ns: VethNamespace, kids: list[Child]
) -> None:
    listen = {"sockets": [{"op": "listen", "host": "127.0.0.1"}, {"op": "listen", "host": "::1"}]}
    local, ready = start(kids, holder_argv(listen))
    port4, port6 = (held["laddr"][1] for held in ready["sockets"])
    spec = {
        "sockets": [
            {"op": "connect", "host": "127.0.0.1", "port": port4},
            {"op": "connect", "host": "::1", "port": port6},
            {"op": "connect", "host": "::ffff:127.0.0.1", "port": port4},
            {"op": "connect", "host": "127.0.0.2", "port": 9, "udp": True},
            {"op": "listen", "host": veth_ns.host_v4},
            {"op": "bind", "host": veth_ns.host_v4, "udp": True},
            {"op": "listen", "host": "::"},
            {"op": "unix"},
        ]
    }
    client, _ = start(kids, holder_argv(spec))
    assert wait_until(lambda: len(psutil.Process(local.pid).net_connections("inet")) >= 5)
    assert len(psutil.Process(client.pid).net_connections("inet")) == 7
    assert len(psutil.Process(client.pid).net_connections("unix")) == 2
    rows = scan()
    assert not [row for row in rows if row.pid in (local.pid, client.pid)]


def test_agrees_with_psutil(
    veth_ns: VethNamespace, server: tuple[Child, int, int], kids: list[Child]
) -> None:
    _srv, port4, port6 = server
    spec = {
        "sockets": [
            {"op": "connect", "host": veth_ns.ns_v4, "port": port4, "count": 3},
            {"op": "connect", "host": veth_ns.ns_v6, "port": port6, "count": 2},
            {"op": "connect", "host": f"::ffff:{veth_ns.ns_v4}", "port": port4},
            {"op": "connect", "host": veth_ns.ns_v4, "port": 53, "udp": True},
            {"op": "connect", "host": veth_ns.ns_v6, "port": 53, "udp": True},
            {"op": "connect", "host": "127.0.0.1", "port": 9, "udp": True},
            {"op": "bind", "host": veth_ns.host_v4, "udp": True},
        ]
    }
    pids = [start(kids, holder_argv(spec))[0].pid for _ in range(3)]
    rows = scan()
    for pid in pids:
        expected = {
            (c.fd, int(c.family), c.laddr.ip, c.laddr.port, c.raddr.ip, c.raddr.port, c.status)
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.raddr and is_remote_peer(c.raddr.ip)
        }
        got = {
            (r.fd, r.family, r.local_address, r.local_port, r.remote_address, r.remote_port, state)
            for r in rows_of(pid, rows).values()
            for state in [r.state or psutil.CONN_NONE]  # psutil's state of a UDP socket
        }
        assert got == expected and len(got) == 8


def test_udp_reply_socket_on_a_bound_port_is_inbound(
    veth_ns: VethNamespace, kids: list[Child]
) -> None:
    port = 20000 + os.getpid() % 20000
    spec = {
        "sockets": [
            {"op": "bind", "host": veth_ns.ns_v4, "port": port, "udp": True},
            {"op": "listen", "host": veth_ns.ns_v4, "port": port + 1},
            {
                "op": "connect",
                "host": veth_ns.host_v4,
                "port": 9,
                "udp": True,
                "from": [veth_ns.ns_v4, port],
            },
            {
                "op": "connect",
                "host": veth_ns.host_v4,
                "port": 9,
                "udp": True,
                "from": [veth_ns.ns_v4, port + 1],
            },
        ],
    }
    child, ready = start(kids, veth_ns.exec_argv(holder_argv(spec)))
    rows = rows_of(child.pid)
    reply, other = (rows[held["fd"]] for held in ready["sockets"][2:])
    assert (reply.local_port, reply.direction) == (port, "inbound")
    # a TCP listener on the port does not make a UDP socket inbound
    assert (other.local_port, other.direction) == (port + 1, "outbound")
    assert reply.net_namespace == veth_ns.inode


def test_process_name_as_osquery_reads_it(veth_ns: VethNamespace, kids: list[Child]) -> None:
    spec = {
        "comm": "rn a:b::c",
        "sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": 9, "udp": True}],
    }
    client, ready = start(kids, holder_argv(spec))
    row = rows_of(client.pid)[ready["sockets"][0]["fd"]]
    assert row.name == "rn a:b:c"  # osquery drops empty ':' pieces of status lines


def test_netlink_and_proc_text_agree(
    veth_ns: VethNamespace, server: tuple[Child, int, int], kids: list[Child]
) -> None:
    srv, port4, port6 = server
    spec = {
        "sockets": [
            {"op": "connect", "host": veth_ns.ns_v4, "port": port4, "count": 60},
            {"op": "connect", "host": veth_ns.ns_v6, "port": port6, "count": 30},
            {"op": "connect", "host": veth_ns.ns_v6, "port": 53, "udp": True},
        ]
    }
    client, _ = start(kids, holder_argv(spec))
    assert wait_until(lambda: socket_count(srv.pid) >= 92)
    ours = {client.pid, srv.pid}
    fast = [row for row in scan() if row.pid in ours]
    text = [row for row in scan(netlink=False) if row.pid in ours]
    assert fast == text and len(fast) == 2 * 90 + 1


def test_short_read_stops_only_at_the_end(
    veth_ns: VethNamespace, server: tuple[Child, int, int], kids: list[Child]
) -> None:
    srv, port4, _ = server
    spec = {"sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": port4, "count": 120}]}
    start(kids, holder_argv(spec))
    assert wait_until(lambda: socket_count(srv.pid) >= 122)
    path = f"/proc/{srv.pid}/net/tcp"
    with open(path, "rb") as handle:
        whole = handle.read().decode()
    fast = read_table(path)
    assert len(whole) > 3 * 4096

    def inodes(text: str) -> set[str]:
        return {line.split()[9] for line in text.splitlines()[1:]} - {"0"}  # 0: TIME_WAIT

    assert inodes(fast) == inodes(whole) and len(inodes(whole)) >= 121  # + the listener


def test_osquery_rows_are_strings_in_column_order(
    veth_ns: VethNamespace, server: tuple[Child, int, int], kids: list[Child]
) -> None:
    _srv, port4, _ = server
    start(kids, holder_argv({"sockets": [{"op": "connect", "host": veth_ns.ns_v4, "port": port4}]}))
    rows = scan()
    assert rows
    for row in rows:
        as_osquery = row.as_osquery_row()
        assert tuple(as_osquery) == COLUMNS
        assert all(isinstance(value, str) for value in as_osquery.values())
        assert as_osquery["pid"] == str(row.pid)
    assert SocketRow._fields == COLUMNS


def test_address_text_matches_inet_ntop() -> None:
    for text in ("127.0.0.1", "10.231.7.2", "0.0.0.0"):
        assert decode_address(proc_hex(socket.inet_pton(socket.AF_INET, text))) == text
    for text in ("2001:db8::7", "::ffff:10.0.0.1", "::1", "::", "fd00:1:2:3:4:5:6:7"):
        assert decode_address(proc_hex(socket.inet_pton(socket.AF_INET6, text))) == text
    assert decode_address("XYZ") == decode_address("0100007G") == ""


def test_malformed_table_lines_are_skipped() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 0200000A:0050 01 00000000:00000000 00:00000000 00000000     0        0 111 1\n"
        "   1: garbage\n"
        "   2: 0100007F:ZZZZ 0200000A:0050 01 00000000:00000000 00:00000000 00000000     0        0 112 1\n"
        "   3: 0100007F:1F90 0200000A:0050 0D 00000000:00000000 00:00000000 00000000     0        0 113 1\n"
    )
    index = SocketIndex({111, 112, 113, 114})
    parse_table(text, 7, 2, 6, index)
    assert sorted(index.sockets) == [111, 113]
    assert index.sockets[111].remote_address == (
        "10.0.0.2" if sys.byteorder == "little" else "2.0.0.10"
    )
    assert (index.sockets[111].local_port, index.sockets[111].state) == (8080, "ESTABLISHED")
    assert index.sockets[113].state == "UNKNOWN"  # 13, BOUND_INACTIVE: past osquery's list


def test_remote_peer_filter() -> None:
    for address in ("", "0.0.0.0", "::", "127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.53"):
        assert not is_remote_peer(address), address
    for address in ("10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "128.0.0.1", "::2"):
        assert is_remote_peer(address), address


def proc_hex(packed: bytes) -> str:
    words = struct.unpack(f"={len(packed) // 4}I", packed)  # host order, as /proc prints
    return "".join(f"{word:08X}" for word in words)


def fake_process(
    root: Path, pid: int, name: str, parent: int, sockets: dict[int, int] | None = None
) -> None:
    """/proc/<pid> as the collector reads it: status, exe, cmdline, cwd, and when
    `sockets` (fd → inode) is given, fd/, ns/net and a net/tcp table."""
    base = root / str(pid)
    base.mkdir()
    (base / "status").write_text(f"Name:\t{name}\nUid:\t0\t0\t0\t0\nPPid:\t{parent}\n")
    (base / "cmdline").write_bytes(f"{name}\0--flag\0".encode())
    (base / "exe").symlink_to(f"/usr/bin/{name}")
    (base / "cwd").symlink_to("/")
    if sockets is None:
        return
    (base / "fd").mkdir()
    for fd, inode in sockets.items():
        (base / "fd" / str(fd)).symlink_to(f"socket:[{inode}]")
    (base / "ns").mkdir()
    (base / "ns" / "net").symlink_to("net:[4026531840]")
    (base / "net").mkdir()
    (base / "net" / "tcp").write_text(FAKE_TCP)


def _tcp_line(inode: int, local: tuple[str, int], remote: tuple[str, int], state: int) -> str:
    ends = (
        f"{proc_hex(socket.inet_aton(address))}:{port:04X}" for address, port in (local, remote)
    )
    return (
        f"   0: {' '.join(ends)} {state:02X} 00000000:00000000 00:00000000 00000000 0 0 {inode} 1"
    )


FAKE_TCP = "\n".join([
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    _tcp_line(111, ("10.0.0.5", 40001), ("203.0.113.5", 443), 1),  # held by 300, parent gone
    _tcp_line(222, ("10.0.0.5", 40002), ("203.0.113.6", 4444), 1),  # held by 400, below init
    _tcp_line(333, ("10.0.0.5", 40003), ("203.0.113.7", 4444), 1),  # shared by 999 and 1000
    _tcp_line(444, ("0.0.0.0", 8080), ("0.0.0.0", 0), 10),  # a listener shared by both
    _tcp_line(555, ("10.0.0.5", 8080), ("198.51.100.1", 50000), 1),  # accepted by 1000
    "",
])  # fmt: skip


def test_ancestors_and_holders_in_a_fake_proc_root(tmp_path: Path) -> None:
    fake_process(tmp_path, 1, "init", 0)
    fake_process(tmp_path, 300, "curl", 299, {3: 111})  # 299 does not exist
    fake_process(tmp_path, 400, "sh", 1, {5: 222})
    fake_process(tmp_path, 999, "bash", 1, {3: 333, 4: 444})
    fake_process(tmp_path, 1000, "sleep", 999, {3: 333, 4: 444, 7: 555})
    rows = {(row.pid, row.fd): row for row in scan(str(tmp_path))}
    assert sorted(rows) == [(300, 3), (400, 5), (999, 3), (1000, 3), (1000, 7)]
    ancestors = {key: tuple(getattr(row, c) for c in COLUMNS[17:-1]) for key, row in rows.items()}
    assert ancestors[(300, 3)] == (299, "", "", "", -1, "", "", "", -1, "", "", "")
    assert ancestors[(400, 5)] == (
        1, "init", "/usr/bin/init", "init --flag",
        0, "", "", "",  # pid 0 is no process: the LEFT JOIN finds nothing
        -1, "", "", "",
    )  # fmt: skip
    assert ancestors[(1000, 3)] == (
        999, "bash", "/usr/bin/bash", "bash --flag",
        1, "init", "/usr/bin/init", "init --flag",
        0, "", "", "",
    )  # fmt: skip
    assert rows[(999, 3)].socket == rows[(1000, 3)].socket == 333
    # osquery would list the shared listener under "999" only (the last pid as a string),
    # so 1000's accepted socket would be outbound there; here every holder listens
    assert rows[(1000, 7)].direction == "inbound"
    assert rows[(1000, 3)].direction == rows[(999, 3)].direction == "outbound"


def test_a_fake_proc_root_without_processes_gives_no_rows(tmp_path: Path) -> None:
    assert scan(str(tmp_path)) == []
    assert scan(str(tmp_path / "missing")) == []
