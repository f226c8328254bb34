"""The first connection of a signal's candidate, read back from the observations."""

from __future__ import annotations

import sqlite3
from typing import Any

from rarenet.baseline.detect.lineage import parse_chain
from rarenet.baseline.detect.signal import Detail

_COLUMNS = (
    "time, host_uuid, pid, uid, username, cmdline, cwd, parent_pid, parent_name, "
    "family, protocol, local_address, local_port, remote_address, remote_port, direction"
)
_DEFAULTS: tuple[Any, ...] = (0, "", -1, -1, "", "", "", -1, "", 0, 0, "", 0, "", 0, "outbound")


def load_detail(conn: sqlite3.Connection, observation_id: int) -> Detail | None:
    """The observation's detail and process chain; None once retention pruned it (the
    signal still names host and binary)."""
    return detail_from_row(detail_row(conn, observation_id))


def detail_row(conn: sqlite3.Connection, observation_id: int) -> list[Any] | None:
    """The observation's detail columns and ancestors as stored (JSON-shaped, so a
    shard can send it); None once pruned."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, ancestors FROM observations WHERE id = ?", (observation_id,)
    ).fetchone()
    return None if row is None else list(row)


def detail_from_row(row: list[Any] | None) -> Detail | None:
    """A `Detail` from `detail_row`'s answer."""
    if row is None:
        return None
    values: list[Any] = [d if v is None else v for v, d in zip(row[:-1], _DEFAULTS, strict=True)]
    values.append(parse_chain(row[-1], parent_pid=values[7], parent_name=values[8]))
    return Detail(*values)
