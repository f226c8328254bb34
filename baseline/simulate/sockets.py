"""Socket rows as JSON bytes, fast: pre-serialised row templates shared by all hosts.

A row has the 20 string columns of the `rarenet_open_sockets` query. Everything fixed for
a program opening a flow (name, path, cmdline, user, namespace, protocol, direction,
family) is serialised once per fleet; the per-row values are filled in with bytes `%`
formatting. Templates, views and encoded address pools live in one `SharedCache`, so
memory per host stays small even for very large fleets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import orjson

from rarenet.baseline.simulate.catalogue import DAEMON, HOST_NETNS, POD_UID, USERS, Flow, Program

COLUMNS = (
    "pid",
    "fd",
    "socket",
    "family",
    "protocol",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "state",
    "net_namespace",
    "name",
    "path",
    "cmdline",
    "cwd",
    "uid",
    "username",
    "parent",
    "parent_name",
    "direction",
)
# Per-row columns, in COLUMNS order, with their % conversion.
_DYNAMIC = {
    "pid": b"%d",
    "fd": b"%d",
    "socket": b"%d",
    "local_address": b"%s",
    "local_port": b"%d",
    "remote_address": b"%s",
    "remote_port": b"%d",
    "parent": b"%d",
}


class View(NamedTuple):
    """A program as it runs on one host: its fixed columns, and how it gets pids."""

    key: str
    parent: str  # parent program key ("" for pid 1)
    parent_daemon: bool  # the parent is long-running (stable pid)
    mode: str
    pod: bool
    columns: dict[str, str]  # name, path, cmdline, cwd, uid, username, parent_name, netns


class Stream(NamedTuple):
    """A flow as one program opens it on one host: row templates and address pools.

    Templates take (pid, fd, socket, local_address, local_port, remote_address,
    remote_port, parent); the family is part of the template.
    """

    template4: bytes
    template6: bytes  # b"" unless the host and the peer both speak IPv6
    v4: tuple[bytes, ...]
    v6: tuple[bytes, ...]
    local4: bytes
    local6: bytes
    port: int
    inbound: bool
    fd_low: int
    fd_span: int


def row_template(fixed: Mapping[str, str]) -> bytes:
    """A JSON object of all COLUMNS: `fixed` values serialised, the rest % placeholders."""
    doc = {column: fixed.get(column, f"@@{column}@@") for column in COLUMNS}
    raw = orjson.dumps(doc).replace(b"%", b"%%")
    for column, conversion in _DYNAMIC.items():
        raw = raw.replace(f"@@{column}@@".encode(), conversion)
    return raw


def _view(program: Program, parent: Program | None, user: str, uid: int, netns: str) -> View:
    def fill(text: str) -> str:
        return text.replace("{user}", user)

    username = fill(program.user)
    columns = {
        "net_namespace": netns if program.pod else HOST_NETNS,
        "name": program.name,
        "path": fill(program.path),
        "cmdline": fill(program.cmdline),
        "cwd": fill(program.cwd),
        "uid": str(uid if program.user == "{user}" else USERS.get(username, POD_UID)),
        "username": username,
        "parent_name": parent.name if parent else "",
    }
    daemon_parent = parent is None or parent.mode == DAEMON
    return View("", program.parent, daemon_parent, program.mode, program.pod, columns)


class SharedCache:
    """Views, row templates and encoded address pools, shared by all hosts of a run."""

    def __init__(self) -> None:
        self._views: dict[tuple[Program, Program | None, str, int, str], View] = {}
        self._templates: dict[tuple[object, ...], bytes] = {}
        self._pools: dict[tuple[str, ...], tuple[bytes, ...]] = {}

    def view(
        self, key: str, programs: Mapping[str, Program], user: str, uid: int, netns: str
    ) -> View:
        """A program as it runs for this user and pod namespace."""
        program = programs[key]
        parent = programs[program.parent] if program.parent else None
        cache_key = (program, parent, user, uid, netns if program.pod else "")
        found = self._views.get(cache_key)
        if found is None:
            found = self._views[cache_key] = _view(program, parent, user, uid, netns)
        return found._replace(key=key)

    def template(self, view: View, flow: Flow, family: str) -> bytes:
        """The row template of `view` opening `flow` over IPv4 ("2") or IPv6 ("10")."""
        cache_key = (*view.columns.values(), flow.udp, flow.inbound, family)
        found = self._templates.get(cache_key)
        if found is None:
            fixed = {
                **view.columns,
                "family": family,
                "protocol": "17" if flow.udp else "6",
                "state": "" if flow.udp else "ESTABLISHED",
                "direction": "inbound" if flow.inbound else "outbound",
            }
            found = self._templates[cache_key] = row_template(fixed)
        return found

    def pool(self, addresses: tuple[str, ...]) -> tuple[bytes, ...]:
        """Addresses as bytes."""
        found = self._pools.get(addresses)
        if found is None:
            found = self._pools[addresses] = tuple(a.encode() for a in addresses)
        return found

    def stream(
        self,
        view: View,
        flow: Flow,
        pool: tuple[tuple[str, ...], tuple[str, ...]],
        local: tuple[str, str],
    ) -> Stream:
        """Everything per-row emission needs for `view` opening `flow` from `local` (v4, v6)."""
        v4, v6 = pool
        local4, local6 = ("127.0.0.1", "::1") if v4[0].startswith("127.") else local
        dual = bool(v6 and local6)
        daemon = view.mode == DAEMON
        return Stream(
            template4=self.template(view, flow, "2"),
            template6=self.template(view, flow, "10") if dual else b"",
            v4=self.pool(v4),
            v6=self.pool(v6) if dual else (),
            local4=local4.encode(),
            local6=local6.encode(),
            port=flow.port,
            inbound=flow.inbound,
            fd_low=8 if daemon else 3,
            fd_span=240 if daemon else 12,
        )
