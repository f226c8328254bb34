"""Typed values that leave the parser. Raw JSON never goes further than `parser`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# Query names the packs use (queries/*.sql file stems).
OPEN_SOCKETS_QUERY = "rarenet_open_sockets"
SOCKET_EVENTS_QUERY = "rarenet_socket_events"
RARENET_QUERIES = frozenset({OPEN_SOCKETS_QUERY, SOCKET_EVENTS_QUERY})


class Observation(NamedTuple):
    """One process network connection seen on one host at one data time.

    Field order is the `observations` table's column order (after `id`), so an
    Observation can be handed to `executemany` as it is.
    """

    time: int  # data time, unix seconds
    host: str  # hostIdentifier (or legacy hostname)
    host_uuid: str  # decorations.host_uuid, "" if absent
    name: str  # process.name
    path: str  # process.executable ("" when unknown)
    pid: int
    uid: int  # -1 when unknown
    username: str
    cmdline: str
    cwd: str
    parent_pid: int  # -1 when unknown
    parent_name: str
    family: int  # 2 = IPv4, 10 = IPv6
    protocol: int  # 6 = TCP, 17 = UDP
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str
    direction: str  # "outbound" | "inbound"
    query: str  # bare query name, pack prefix removed
    digest: int  # signed 64-bit content hash: idempotency key together with `time`
    ancestors: str = ""  # JSON [[pid, name, path, cmdline], …] nearest first (ingest.ancestry)


OBSERVATION_COLUMNS = Observation._fields


@dataclass(frozen=True)
class Reject:
    """A line that goes to quarantine: its number, why, and its bytes."""

    line: int
    reason: str
    raw: bytes
    size: int  # the line's real length (raw may be cut)
