"""Builders for real-shaped osquery / Fleet result lines (as osqueryd's filesystem
logger and Fleet's webhook destination write them)."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

T0 = 1767571260  # Mon Jan  5 00:01:00 2026 UTC
PACK_QUERY = "pack/unusual-network-activity/rarenet_open_sockets"


def calendar(unix: int) -> str:
    return time.strftime("%a %b %e %H:%M:%S %Y UTC", time.gmtime(unix))


def socket_row(**overrides: Any) -> dict[str, str]:
    """One row of the rarenet_open_sockets query, all values strings (numerics false)."""
    row = {
        "pid": "4242",
        "fd": "3",
        "socket": "98765",
        "family": "2",
        "protocol": "6",
        "local_address": "10.0.0.5",
        "local_port": "51234",
        "remote_address": "203.0.113.7",
        "remote_port": "4444",
        "state": "ESTABLISHED",
        "net_namespace": "4026531840",
        "name": "bash",
        "path": "/usr/bin/bash",
        "cmdline": "bash -i",
        "cwd": "/var/www",
        "uid": "33",
        "username": "www-data",
        "parent": "4000",
        "parent_name": "php-fpm8.2",
        "direction": "outbound",
    }
    row.update({key: str(value) for key, value in overrides.items()})
    return row


def envelope(
    name: str = PACK_QUERY, host: str = "web-001", unix: int = T0, **extra: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "name": name,
        "hostIdentifier": host,
        "calendarTime": calendar(unix),
        "unixTime": unix,
        "epoch": 0,
        "counter": 1,
        "numerics": False,
        "decorations": {"host_uuid": f"uuid-{host}", "hostname": host},
    }
    obj.update(extra)
    return obj


def event(row: dict[str, Any], action: str = "added", **kw: Any) -> dict[str, Any]:
    return {**envelope(**kw), "columns": row, "action": action}


def snapshot(rows: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {**envelope(**kw), "snapshot": rows, "action": "snapshot"}


def batch(
    added: list[dict[str, Any]], removed: list[dict[str, Any]] | None = None, **kw: Any
) -> dict[str, Any]:
    return {**envelope(**kw), "diffResults": {"added": added, "removed": removed or []}}


def fleet_body(details: list[dict[str, Any]]) -> dict[str, Any]:
    return {"timestamp": "2026-01-05T00:01:02.123456Z", "details": details}


def line(obj: Any) -> bytes:
    return orjson.dumps(obj) + b"\n"


def socket_line(host: str, unix: int, **columns: Any) -> bytes:
    """One result line: a socket row of `columns` (socket_row's defaults for the rest),
    added on `host` at data time `unix`."""
    return line(event(socket_row(**columns), host=host, unix=unix))


def connection_line(
    host: str, t: int, name: str, path: str, remote: str, port: int, **columns: Any
) -> bytes:
    """One result line: `host`'s process `name` at `path` connected to remote:port at
    data time `t` (its pid fixed per host and name; other columns as `columns` say)."""
    row = socket_row(
        pid=random.Random(f"{host}{name}").randrange(1000, 30000),
        name=name,
        path=path,
        remote_address=remote,
        remote_port=port,
        **columns,
    )
    return line(event(row, host=host, unix=t))
