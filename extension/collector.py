"""The /proc socket collector: the rows of the pack query `rarenet_open_sockets`, without osquery.

The query joins osquery's `process_open_sockets` with `processes` (the socket's process
and its parent) and `users`; it keeps inet sockets of real processes that have a remote
peer, drops loopback peers and LISTEN sockets, and marks a socket `inbound` when the same
process listens on its local port (osquery's `listening_ports`). `scan()` reproduces that
from /proc, including osquery's quirks:

* one row per socket: a socket shared by several descriptors or processes belongs to
  the last (pid, fd) met with pids walked as sorted strings and fds in directory order;
* each network namespace's tables are read once, through one of its pids; a socket is
  reported with the namespace whose table holds it (the tables come over netlink, as
  `ss` reads them, with the /proc/<pid>/net text files as the fallback);
* TCP states use osquery's names (kernel state 7 is `CLOSED`); UDP has state "".
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

from extension import proc_diag
from extension.proc_net import INET_TABLES, SocketIndex, read_namespace
from extension.proc_pid import (
    list_pids,
    net_namespace,
    process_name,
    read_process,
    socket_fds,
    utf8_text,
)

COLUMNS: tuple[str, ...] = (
    "pid", "fd", "socket", "family", "protocol", "local_address", "local_port",
    "remote_address", "remote_port", "state", "net_namespace", "name", "path", "cmdline",
    "cwd", "uid", "username", "parent", "parent_name", "direction",
)  # fmt: skip

_NO_PEER = frozenset({"", "0.0.0.0", "::", "::1"})


@dataclass(frozen=True, slots=True)
class SocketRow:
    """One row of `rarenet_open_sockets`; fields in `COLUMNS` order."""

    pid: int
    fd: int
    socket: int
    family: int
    protocol: int
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str
    net_namespace: int
    name: str
    path: str
    cmdline: str
    cwd: str
    uid: int
    username: str
    parent: int
    parent_name: str
    direction: str

    def as_osquery_row(self) -> dict[str, str]:
        """Every column as a string, as osquery logs it with `numerics` false."""
        return {column: str(getattr(self, column)) for column in COLUMNS}


def is_remote_peer(address: str) -> bool:
    """False for what the pack query drops: "", unspecified, 127/8, ::1, ::ffff:127/104."""
    return not (
        address in _NO_PEER or address.startswith("127.") or address.startswith("::ffff:127.")
    )


def scan(
    proc_root: str = "/proc",
    *,
    netlink: bool = True,
    after_listing: Callable[[Sequence[int]], None] | None = None,
) -> list[SocketRow]:
    """All rows of `rarenet_open_sockets` on this host, sorted by (pid, fd).

    Socket tables come over netlink (sock_diag) when `netlink` is true and `proc_root`
    is the live "/proc", else (and for any table netlink cannot dump) from the
    /proc/<pid>/net text files osquery reads. `after_listing` (a test seam) is called
    with the pids once they are listed, before any of their descriptors are read.
    Never raises for processes that vanish or cannot be read: their sockets are left out.
    """
    pids = list_pids(proc_root)
    if after_listing is not None:
        after_listing(pids)
    owners, namespaces = _owners_and_namespaces(proc_root, pids)
    index = SocketIndex(owners)
    netlink = netlink and proc_root == "/proc"
    for namespace in sorted(namespaces, key=lambda ns: ns == 0):
        _read_namespace(proc_root, namespace, namespaces[namespace], index, netlink)
    return _rows(proc_root, owners, index)


def _owners_and_namespaces(
    proc_root: str, pids: Sequence[int]
) -> tuple[dict[int, tuple[int, int]], dict[int, list[int]]]:
    """Socket inode → (pid, fd) (the last one wins, as in osquery) and netns → its pids."""
    owners: dict[int, tuple[int, int]] = {}
    namespaces: dict[int, list[int]] = {}
    for pid in pids:
        namespace = net_namespace(proc_root, pid)
        if namespace is None:
            continue
        fds = socket_fds(proc_root, pid)
        namespaces.setdefault(namespace, []).append(pid)
        for fd, inode in fds:
            owners[inode] = (pid, fd)
    if 0 in namespaces:
        _place_unreadable(proc_root, namespaces)
    return owners, namespaces


def _place_unreadable(proc_root: str, namespaces: dict[int, list[int]]) -> None:
    """Move pids whose ns/net link is unreadable (group 0) into their real namespace.

    /proc/<pid>/net/tcp has one inode per namespace and needs no ptrace access, so it
    tells which known namespace such a pid is in. (osquery would read their tables a
    second time as namespace 0 and report those sockets twice.)
    """
    by_table: dict[int, int] = {}
    for namespace, pids in namespaces.items():
        if namespace != 0:
            table = _table_inode(proc_root, pids[0])
            if table is not None:
                by_table.setdefault(table, namespace)
    unplaced: list[int] = []
    for pid in namespaces.pop(0):
        known = by_table.get(_table_inode(proc_root, pid) or -1)
        if known is None:
            unplaced.append(pid)
        else:
            namespaces[known].append(pid)
    if unplaced:
        namespaces[0] = unplaced


def _table_inode(proc_root: str, pid: int) -> int | None:
    try:
        return os.stat(f"{proc_root}/{pid}/net/tcp").st_ino
    except OSError:
        return None


def _read_namespace(
    proc_root: str, namespace: int, pids: list[int], index: SocketIndex, netlink: bool
) -> None:
    """Add one namespace's sockets to `index`: netlink where it works, else /proc text.

    Namespace 0 holds pids whose namespace could not be read; it goes last, so a socket
    is reported once, with the real namespace that holds it.
    """
    tables = list(INET_TABLES)
    if netlink and namespace != 0:
        tables = proc_diag.read_namespace(proc_root, pids, namespace, index)
    for pid in pids if tables else ():
        if read_namespace(f"{proc_root}/{pid}/net", namespace, index, tables):
            break


def _rows(
    proc_root: str, owners: dict[int, tuple[int, int]], index: SocketIndex
) -> list[SocketRow]:
    """Join the sockets with their processes, filter and mark direction, like the query."""
    sockets = index.sockets
    listening = {(owners[i][0], sockets[i].protocol, sockets[i].local_port) for i in index.bound}
    # A remote port of 0 means no peer; that also drops every LISTEN socket.
    addresses = {s.remote_address for s in sockets.values() if s.remote_port}
    peers = {address for address in addresses if is_remote_peer(address)}
    kept = [(i, s) for i, s in sockets.items() if s.remote_port and s.remote_address in peers]
    processes = _process_columns(proc_root, {owners[inode][0] for inode, _ in kept})
    rows: list[SocketRow] = []
    for inode, s in kept:
        pid, fd = owners[inode]
        process = processes[pid]
        if process is None:
            continue  # the process is gone: the query's join with `processes` drops it
        inbound = (pid, s.protocol, s.local_port) in listening
        rows.append(SocketRow(pid, fd, inode, *s, *process, "inbound" if inbound else "outbound"))
    rows.sort(key=attrgetter("pid", "fd"))
    return rows


class ProcessColumns(NamedTuple):
    """The query's process columns of a socket row, `name` … `parent_name`."""

    name: str
    path: str
    cmdline: str
    cwd: str
    uid: int
    username: str
    parent: int
    parent_name: str


def _process_columns(proc_root: str, pids: set[int]) -> dict[int, ProcessColumns | None]:
    """The process columns of each pid (None if it is gone); usernames looked up once."""
    infos = {pid: read_process(proc_root, pid) for pid in pids}
    names = {pid: info.name for pid, info in infos.items() if info is not None}
    users: dict[int, str] = {}
    found: dict[int, ProcessColumns | None] = {}
    for pid, info in infos.items():
        if info is None:
            found[pid] = None
            continue
        if info.uid not in users:
            users[info.uid] = _username(info.uid)
        if info.parent not in names:
            names[info.parent] = process_name(proc_root, info.parent)
        found[pid] = ProcessColumns(
            info.name, info.path, info.cmdline, info.cwd, info.uid, users[info.uid],
            info.parent, names[info.parent],
        )  # fmt: skip
    return found


def _username(uid: int) -> str:
    """The user's name (invalid UTF-8 in the user database as U+FFFD); "" if unknown."""
    try:
        return utf8_text(pwd.getpwuid(uid).pw_name)
    except (KeyError, OverflowError):
        return ""
