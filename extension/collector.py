"""The /proc socket collector: the rows of the pack query `rarenet_open_sockets`, without osquery.

The query joins osquery's `process_open_sockets` with `processes` (the socket's process,
its parent, grandparent and great-grandparent) and `users`; it keeps inet sockets of real
processes that have a remote peer, drops loopback peers and LISTEN sockets, and marks a
socket `inbound` when the same process listens on its local port (osquery's
`listening_ports`). `scan()` reproduces that from /proc, including osquery's quirks, with
one deliberate difference:

* one row per holder, where osquery gives one per socket: a socket shared by several
  descriptors or processes (a shell's `exec 3<>/dev/tcp/…` inherited by `sleep`) is a
  row for every (pid, fd) that holds it; osquery reports only the last (pid, fd) it
  meets, pids walked as sorted strings (docs/extension.md, "Shared sockets"). A process
  listens on a port when it holds the listening socket, shared or not;
* each network namespace's tables are read once, through one of its pids; a socket is
  reported with the namespace whose table holds it (the tables come over netlink, as
  `ss` reads them, with the /proc/<pid>/net text files as the fallback);
* TCP states use osquery's names (kernel state 7 is `CLOSED`); UDP has state "".
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import NamedTuple

from rarenet.extension import proc_diag
from rarenet.extension.proc_net import INET_TABLES, SocketIndex, read_namespace
from rarenet.extension.proc_pid import (
    Ancestor,
    list_pids,
    net_namespace,
    read_ancestor,
    read_process,
    socket_fds,
    utf8_text,
)

COLUMNS: tuple[str, ...] = (
    "pid", "fd", "socket", "family", "protocol", "local_address", "local_port",
    "remote_address", "remote_port", "state", "net_namespace", "name", "path", "cmdline",
    "cwd", "uid", "username", "parent", "parent_name", "parent_path", "parent_cmdline",
    "grandparent", "grandparent_name", "grandparent_path", "grandparent_cmdline",
    "great_grandparent", "great_grandparent_name", "great_grandparent_path",
    "great_grandparent_cmdline", "direction",
)  # fmt: skip

_NO_PEER = frozenset({"", "0.0.0.0", "::", "::1"})
Holders = dict[int, list[tuple[int, int]]]  # socket inode → every (pid, fd) holding it


class SocketRow(NamedTuple):
    """One row of `rarenet_open_sockets`; fields in `COLUMNS` order.

    A NamedTuple, not a frozen dataclass: with 31 fields a frozen dataclass's __init__
    (one object.__setattr__ per field) cost ~9 µs a row, a third of a 4,000-row scan.
    """

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
    parent_path: str
    parent_cmdline: str
    grandparent: int
    grandparent_name: str
    grandparent_path: str
    grandparent_cmdline: str
    great_grandparent: int
    great_grandparent_name: str
    great_grandparent_path: str
    great_grandparent_cmdline: str
    direction: str

    def as_osquery_row(self) -> dict[str, str]:
        """Every column as a string, as osquery logs it with `numerics` false."""
        return dict(zip(COLUMNS, map(str, self), strict=True))


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
) -> tuple[Holders, dict[int, list[int]]]:
    """Socket inode → every (pid, fd) holding it (osquery keeps only the last), and
    netns → its pids."""
    owners: Holders = {}
    namespaces: dict[int, list[int]] = {}
    for pid in pids:
        namespace = net_namespace(proc_root, pid)
        if namespace is None:
            continue
        fds = socket_fds(proc_root, pid)
        namespaces.setdefault(namespace, []).append(pid)
        for fd, inode in fds:
            holders = owners.get(inode)
            if holders is None:
                owners[inode] = [(pid, fd)]
            else:
                holders.append((pid, fd))
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


def _rows(proc_root: str, owners: Holders, index: SocketIndex) -> list[SocketRow]:
    """Join the sockets with their processes, filter and mark direction, like the query:
    one row per holder of each kept socket."""
    sockets = index.sockets
    # osquery's listening_ports is built from process_open_sockets; so is this, from ours
    listening = {
        (pid, sockets[i].protocol, sockets[i].local_port)
        for i in index.bound
        for pid, _ in owners[i]
    }
    # A remote port of 0 means no peer; that also drops every LISTEN socket.
    addresses = {s.remote_address for s in sockets.values() if s.remote_port}
    peers = {address for address in addresses if is_remote_peer(address)}
    kept = [(i, s) for i, s in sockets.items() if s.remote_port and s.remote_address in peers]
    processes = _process_columns(proc_root, {pid for i, _ in kept for pid, _ in owners[i]})
    rows: list[SocketRow] = []
    for inode, s in kept:
        for pid, fd in owners[inode]:
            process = processes[pid]
            if process is None:
                continue  # the process is gone: the query's join with `processes` drops it
            direction = "inbound" if (pid, s.protocol, s.local_port) in listening else "outbound"
            # one starred tuple: mypy 2.4 mis-checks `*s, *process` at this length
            rows.append(SocketRow(pid, fd, inode, *(*s, *process), direction))
    rows.sort(key=attrgetter("pid", "fd"))
    return rows


class ProcessColumns(NamedTuple):
    """The query's process columns of a socket row, `name` … `great_grandparent_cmdline`."""

    name: str
    path: str
    cmdline: str
    cwd: str
    uid: int
    username: str
    parent: int
    parent_name: str
    parent_path: str
    parent_cmdline: str
    grandparent: int
    grandparent_name: str
    grandparent_path: str
    grandparent_cmdline: str
    great_grandparent: int
    great_grandparent_name: str
    great_grandparent_path: str
    great_grandparent_cmdline: str


# parent_name … great_grandparent_cmdline
Lineage = tuple[str, str, str, int, str, str, str, int, str, str, str]
_NO_ANCESTOR = Ancestor("", "", "", -1)  # what a LEFT JOIN that finds nothing leaves


class _Ancestors:
    """Ancestors read at most once per scan: pid → `Ancestor`, None when there is none."""

    def __init__(self, proc_root: str, known: dict[int, Ancestor | None]) -> None:
        self.proc_root = proc_root
        self.known = known

    def get(self, pid: int) -> Ancestor:
        if pid not in self.known:
            self.known[pid] = read_ancestor(self.proc_root, pid)
        return self.known[pid] or _NO_ANCESTOR

    def lineage(self, parent: int) -> Lineage:
        """Parent, grandparent and great-grandparent, as the query's three LEFT JOINs."""
        first = self.get(parent)
        second = self.get(first.parent)
        third = self.get(second.parent)
        return (
            first.name, first.path, first.cmdline, first.parent,
            second.name, second.path, second.cmdline, second.parent,
            third.name, third.path, third.cmdline,
        )  # fmt: skip


def _process_columns(proc_root: str, pids: set[int]) -> dict[int, ProcessColumns | None]:
    """The process and ancestor columns of each pid (None if it is gone); each process
    and username is read once, a holder that is also an ancestor included."""
    infos = {pid: read_process(proc_root, pid) for pid in pids}
    ancestors = _Ancestors(proc_root, {
        pid: Ancestor(info.name, info.path, info.cmdline, info.parent)
        for pid, info in infos.items() if info is not None
    })  # fmt: skip
    users: dict[int, str] = {}
    found: dict[int, ProcessColumns | None] = {}
    for pid, info in infos.items():
        if info is None:
            found[pid] = None
            continue
        if info.uid not in users:
            users[info.uid] = _username(info.uid)
        found[pid] = ProcessColumns(
            info.name, info.path, info.cmdline, info.cwd, info.uid, users[info.uid],
            info.parent, *ancestors.lineage(info.parent),
        )  # fmt: skip
    return found


def _username(uid: int) -> str:
    """The user's name (invalid UTF-8 in the user database as U+FFFD); "" if unknown."""
    try:
        return utf8_text(pwd.getpwuid(uid).pw_name)
    except (KeyError, OverflowError):
        return ""
