"""A network namespace's inet sockets from its `/proc/<pid>/net/*` tables, read like osquery.

osquery's `process_open_sockets` reads, per network namespace, `tcp`, `udp`, `udplite`,
`raw` and `icmp` for both families. `raw` and `icmp` lines always print remote port 0
(the kernel's formatters), so they can never pass the pack query's `remote_port != 0`
filter, nor match a connected socket's protocol for `direction`; we skip them.
`extension.proc_diag` gets the same sockets faster over netlink; this is the fallback.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Container, Sequence
from typing import NamedTuple

AF_INET = 2
AF_INET6 = 10
IPPROTO_TCP = 6

# (file name under /proc/<pid>/net, family, protocol) — protocol numbers as osquery reports.
INET_TABLES: tuple[tuple[str, int, int], ...] = (
    ("tcp", AF_INET, IPPROTO_TCP),
    ("tcp6", AF_INET6, IPPROTO_TCP),
    ("udp", AF_INET, 17),
    ("udp6", AF_INET6, 17),
    ("udplite", AF_INET, 136),
    ("udplite6", AF_INET6, 136),
)

# osquery's `tcp_states` (osquery/filesystem/linux/proc.h): index = kernel state number;
# 0 and anything past the end (NEW_SYN_RECV, BOUND_INACTIVE) print as UNKNOWN.
TCP_STATES: tuple[str, ...] = (
    "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
    "TIME_WAIT", "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
)  # fmt: skip

_ORDER = sys.byteorder  # /proc prints each 32-bit address word in host byte order
_FAMILIES = {4: socket.AF_INET, 16: socket.AF_INET6}

# A read of a seq_file returns at most one kernel buffer (a page) of whole lines, so a
# read that left room for one more line (these lines are < 300 bytes; we allow 512)
# ended at the end of the table. Stopping there saves the final empty read, which costs
# a second walk of the kernel's whole TCP hash table (~1.7 ms on a 262144-bucket hash).
_SHORT_READ = os.sysconf("SC_PAGE_SIZE") - 512
_READ_SIZE = 1 << 17


class InetSocket(NamedTuple):
    """One inet socket of a namespace, as osquery's `process_open_sockets` shows it.

    Fields are in the order of the pack query's columns `family` … `net_namespace`.
    """

    family: int
    protocol: int
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str
    net_namespace: int


class SocketIndex:
    """The sockets found so far (inode → socket) among the `wanted` inodes.

    An inode keeps the first socket found for it; `bound` lists the inodes of those with
    no remote port (listening or bound-unconnected). Also caches address texts.
    """

    def __init__(self, wanted: Container[int]) -> None:
        self.wanted = wanted
        self.sockets: dict[int, InetSocket] = {}
        self.bound: list[int] = []
        self._addresses: dict[str | bytes, str] = {}

    def packed_address(self, packed: bytes) -> str:
        """Text of a 4- or 16-byte network-order address, as osquery's inet_ntop."""
        text = self._addresses.get(packed)
        if text is None:
            text = self._addresses[packed] = socket.inet_ntop(_FAMILIES[len(packed)], packed)
        return text

    def hex_address(self, encoded: str) -> str:
        """Text of a /proc/net address (`0100007F` → `127.0.0.1`); "" if malformed."""
        text = self._addresses.get(encoded)
        if text is None:
            text = self._addresses[encoded] = decode_address(encoded)
        return text


def tcp_state(number: int) -> str:
    """osquery's name for a kernel TCP state number (1 → ESTABLISHED)."""
    return TCP_STATES[number] if 0 < number < len(TCP_STATES) else "UNKNOWN"


def _hex_tcp_state(field: str) -> str:
    try:
        return tcp_state(int(field, 16))
    except ValueError:
        return "UNKNOWN"


def decode_address(encoded: str) -> str:
    """Text of a /proc/net hex address (host-order 32-bit words); "" if malformed."""
    if len(encoded) not in (8, 32):
        return ""
    try:
        packed = b"".join(
            int(encoded[i : i + 8], 16).to_bytes(4, _ORDER) for i in range(0, len(encoded), 8)
        )
    except ValueError:
        return ""
    return socket.inet_ntop(_FAMILIES[len(packed)], packed)


def read_table(path: str) -> str:
    """The text of a /proc/net table, stopping at its first short read (see `_SHORT_READ`)."""
    handle = os.open(path, os.O_RDONLY)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(handle, _READ_SIZE)
            chunks.append(chunk)
            if len(chunk) <= _SHORT_READ:
                break
    finally:
        os.close(handle)
    return b"".join(chunks).decode("ascii", "replace")


def parse_table(
    text: str, net_namespace: int, family: int, protocol: int, index: SocketIndex
) -> None:
    """Add to `index` the wanted sockets of one table's text; malformed lines are skipped."""
    tcp = protocol == IPPROTO_TCP
    wanted, sockets = index.wanted, index.sockets
    for line in text.split("\n")[1:]:
        fields = line.split(None, 10)
        if len(fields) < 10 or not fields[9].isdigit():
            continue
        inode = int(fields[9])
        if inode not in wanted or inode in sockets:
            continue
        local_hex, _, local_port = fields[1].partition(":")
        remote_hex, _, remote_port = fields[2].partition(":")
        try:
            ports = int(local_port, 16), int(remote_port, 16)
        except ValueError:
            continue
        sockets[inode] = InetSocket(
            family, protocol, index.hex_address(local_hex), ports[0],
            index.hex_address(remote_hex), ports[1],
            _hex_tcp_state(fields[3]) if tcp else "", net_namespace,
        )  # fmt: skip
        if ports[1] == 0:
            index.bound.append(inode)


def read_namespace(
    net_dir: str,
    net_namespace: int,
    index: SocketIndex,
    tables: Sequence[tuple[str, int, int]] = INET_TABLES,
) -> bool:
    """Parse `tables` under `net_dir` (`/proc/<pid>/net`) into `index`.

    Returns False when the directory cannot be read at all (the pid is gone), so the
    caller can try another pid of the same namespace. A missing table (`udplite` on
    kernels without it) is skipped.
    """
    if not os.path.isdir(net_dir):
        return False
    for name, family, protocol in tables:
        try:
            text = read_table(f"{net_dir}/{name}")
        except OSError:
            continue
        parse_table(text, net_namespace, family, protocol, index)
    return True
