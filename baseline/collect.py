"""Collect this host's sockets from /proc into the store, as the pack query would.

Like the pack (`logging: differential_ignore_removals`), only sockets that were not
there at the previous scan are stored: the first scan stores every current socket
(osquery's `counter` 0), later scans store the new ones.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from rarenet.baseline.ingest.model import OPEN_SOCKETS_QUERY, Observation
from rarenet.baseline.ingest.normalise import Filtered, Normaliser, RowError
from rarenet.baseline.store import Store
from rarenet.extension.collector import SocketRow, scan

MACHINE_ID = Path("/etc/machine-id")


def local_host_id(configured: str = "", machine_id: Path = MACHINE_ID) -> str:
    """`[collect] host_id`, else the hostname (osquery's default --host_identifier, what
    a person calls the host), else /etc/machine-id."""
    return configured or socket.gethostname() or local_host_uuid(machine_id)


def local_host_uuid(machine_id: Path = MACHINE_ID) -> str:
    """/etc/machine-id: the host's lasting id (a signal's `host.id`), "" without one."""
    try:
        return machine_id.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


@dataclass
class Collector:
    """Differential /proc collection for one host into one store."""

    store: Store
    normaliser: Normaliser
    host: str
    proc_root: str = "/proc"
    host_uuid: str = ""  # /etc/machine-id (default: the host name)
    _previous: set[tuple[int, int, int]] = field(default_factory=set)

    def collect_once(self, now: int | None = None) -> tuple[int, int]:
        """Scan once; store new sockets. Returns (sockets seen, observations stored)."""
        when = int(time.time()) if now is None else now
        rows = scan(self.proc_root)
        current = {(row.pid, row.fd, row.socket) for row in rows}
        fresh = [row for row in rows if (row.pid, row.fd, row.socket) not in self._previous]
        observations = self._observations(fresh, when)
        with self.store.transaction():
            stored = self.store.insert_observations(observations)
        self._previous = current
        return len(rows), stored

    def _observations(self, rows: list[SocketRow], when: int) -> list[Observation]:
        observations = []
        for row in rows:
            try:
                observations.append(
                    self.normaliser.observe(
                        row.as_osquery_row(),
                        when,
                        self.host,
                        self.host_uuid or self.host,
                        OPEN_SOCKETS_QUERY,
                    )
                )
            except (Filtered, RowError):
                continue
        return observations
