"""A network namespace's inet sockets over NETLINK_SOCK_DIAG, the interface `ss` uses.

The kernel answers with the same sockets and fields as the /proc/net tables that
`extension.proc_net` parses (and osquery reads), without formatting text: a fraction of
the kernel time, and a struct per socket instead of a line to split.

A namespace other than ours needs a netlink socket created inside it: a short-lived
thread joins the namespace (setns, which needs CAP_SYS_ADMIN) and opens the socket,
which stays in that namespace after the thread ends. Anything that fails reports the
tables it could not dump (a kernel without the udp_diag module, say), and the caller
reads those from /proc instead.
"""

from __future__ import annotations

import ctypes
import functools
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence

from rarenet.extension.proc_net import INET_TABLES, IPPROTO_TCP, InetSocket, SocketIndex, tcp_state

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
CLONE_NEWNET = 0x40000000
# The states of sockets a process can own: /proc/net/tcp's states 1..11 except TIME_WAIT
# (6), whose entries are timewait stubs with inode 0 like NEW_SYN_RECV's (12); leaving
# both to the kernel skips the thousands a busy server holds. 13 (BOUND_INACTIVE) would
# add bound-only sockets that /proc/net/tcp does not list.
STATES = 0x0FFE & ~(1 << 6)
TIMEOUT = 5.0

# nlmsghdr + inet_diag_req_v2 (family, protocol, ext, pad, states, zeroed sockid)
_REQUEST = struct.Struct("=IHHIIBBBBI48x")
_KIND = struct.Struct("=IH")  # nlmsghdr's length and type
_STATUS = struct.Struct("=i")  # the error code that NLMSG_DONE / NLMSG_ERROR carry
# inet_diag_msg after the 16-byte nlmsghdr: state, ports (big-endian), src, dst, inode
_MESSAGE = struct.Struct("=xB2x4s16s16s28xI")
_MIN_LENGTH = 16 + _MESSAGE.size
_RECV = 1 << 16


class DumpError(OSError):
    """The kernel refused a dump (no diag module for the protocol) or broke it off."""


def read_namespace(
    proc_root: str, pids: Sequence[int], net_namespace: int, index: SocketIndex
) -> list[tuple[str, int, int]]:
    """Dump every inet table of the namespace into `index`; return the tables that failed."""
    diag = _diag_socket(proc_root, pids, net_namespace)
    if diag is None:
        return list(INET_TABLES)
    with diag:
        for position, (_name, family, protocol) in enumerate(INET_TABLES):
            try:
                _dump(diag, family, protocol, net_namespace, index)
            except OSError:
                # The socket may still hold the rest of the failed dump: use /proc from here.
                return list(INET_TABLES[position:])
    return []


def _dump(
    diag: socket.socket, family: int, protocol: int, net_namespace: int, index: SocketIndex
) -> None:
    """Add the wanted sockets of one SOCK_DIAG_BY_FAMILY dump to `index`."""
    request = (_REQUEST.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    diag.send(_REQUEST.pack(*request, family, protocol, 0, 0, STATES))
    tcp, size = protocol == IPPROTO_TCP, 4 if family == socket.AF_INET else 16
    wanted, sockets = index.wanted, index.sockets
    texts: dict[bytes, str] = {}  # the 16-byte address field → text, for this family
    for state, ports, src, dst, inode in _messages(diag):
        if inode in wanted and inode not in sockets:
            local = texts.get(src) or texts.setdefault(src, index.packed_address(src[:size]))
            remote = texts.get(dst) or texts.setdefault(dst, index.packed_address(dst[:size]))
            remote_port = ports[2] << 8 | ports[3]
            sockets[inode] = InetSocket(
                family, protocol, local, ports[0] << 8 | ports[1], remote, remote_port,
                tcp_state(state) if tcp else "", net_namespace,
            )  # fmt: skip
            if remote_port == 0:
                index.bound.append(inode)


def _messages(diag: socket.socket) -> Iterator[tuple[int, bytes, bytes, bytes, int]]:
    """(state, ports, src, dst, inode) of each socket of a dump, until NLMSG_DONE."""
    while True:
        data = diag.recv(_RECV)
        if not data:
            raise DumpError("netlink socket closed mid-dump")
        offset, end = 0, len(data)
        while offset + _KIND.size <= end:
            length, kind = _KIND.unpack_from(data, offset)
            if kind != SOCK_DIAG_BY_FAMILY or length < _MIN_LENGTH:
                status = _STATUS.unpack_from(data, offset + 16)[0] if offset + 20 <= end else -1
                if kind == NLMSG_DONE and status == 0:
                    return
                raise DumpError(f"netlink message type {kind}, status {status}")
            yield _MESSAGE.unpack_from(data, offset + 16)
            offset += (length + 3) & ~3


def _diag_socket(proc_root: str, pids: Sequence[int], net_namespace: int) -> socket.socket | None:
    """A sock_diag socket in `net_namespace` (joined through one of `pids`), or None."""
    try:
        if os.stat(f"{proc_root}/self/ns/net").st_ino == net_namespace:
            return _open()
    except OSError:
        return None
    setns = _setns()
    if setns is None:
        return None
    for pid in pids:
        box: list[socket.socket] = []
        args = (f"{proc_root}/{pid}/ns/net", net_namespace, setns, box)
        thread = threading.Thread(target=_open_inside, args=args, daemon=True)
        thread.start()
        thread.join(TIMEOUT)
        if box:
            return box[0]
    return None


def _open_inside(
    ns_file: str, net_namespace: int, setns: Callable[[int, int], int], box: list[socket.socket]
) -> None:
    """Thread body: join the namespace, open the socket into `box`; the thread then ends."""
    try:
        handle = os.open(ns_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if os.fstat(handle).st_ino == net_namespace and setns(handle, CLONE_NEWNET) == 0:
            box.append(_open())
    except OSError:
        pass
    finally:
        os.close(handle)


def _open() -> socket.socket:
    diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    diag.settimeout(TIMEOUT)
    return diag


@functools.cache
def _setns() -> Callable[[int, int], int] | None:
    """libc's setns(2), or None where it cannot be loaded."""
    try:
        function: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).setns
    except (OSError, AttributeError):
        return None
    return function
