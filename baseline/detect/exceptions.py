"""Exceptions (allow list): name, path glob, host, user, destination CIDR, port, expiry.

Every field that is set must match (unset fields match anything). Matched candidates
are counted on the run and on the exception itself, never silently dropped.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import time
from dataclasses import dataclass

from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store

FIELDS = ("name", "path_glob", "host", "user", "cidr", "port", "expires_at", "reason")


@dataclass(frozen=True)
class Exception_:
    """One allow-list entry (the trailing underscore avoids the builtin)."""

    id: int
    name: str | None = None
    path_glob: str | None = None
    host: str | None = None
    user: str | None = None
    cidr: str | None = None
    port: int | None = None
    expires_at: int | None = None
    reason: str = ""

    def describe(self) -> str:
        """The exception's conditions, e.g. "path /tmp/.x/*, host web-0?"."""
        parts = [
            f"{label} {value}"
            for label, value in (
                ("name", self.name),
                ("path", self.path_glob),
                ("host", self.host),
                ("user", self.user),
                ("cidr", self.cidr),
                ("port", self.port),
            )
            if value is not None
        ]
        return ", ".join(parts) or "everything"

    def matches(
        self, *, name: str, path: str, host: str, user: str, address: str, port: int
    ) -> bool:
        """True when every set field matches this connection."""
        if self.name is not None and not fnmatch.fnmatchcase(name, self.name):
            return False
        if self.path_glob is not None and not fnmatch.fnmatchcase(path, self.path_glob):
            return False
        if self.host is not None and not fnmatch.fnmatchcase(host, self.host):
            return False
        if self.user is not None and user != self.user:
            return False
        if self.port is not None and port != self.port:
            return False
        if self.cidr is not None:
            try:
                return ipaddress.ip_address(address) in ipaddress.ip_network(self.cidr)
            except ValueError:
                return False
        return True


def add_exception(store: Store, entry: Exception_) -> int:
    """Validate and store an exception; return its id."""
    if all(
        getattr(entry, field) is None
        for field in ("name", "path_glob", "host", "user", "cidr", "port")
    ):
        raise InputError(
            "an exception needs at least one of --name, --path, --host, --user, --cidr, --port"
        )
    if entry.cidr is not None:
        try:
            ipaddress.ip_network(entry.cidr, strict=False)
        except ValueError:
            raise InputError(f"{entry.cidr!r} is not an IP network", where="--cidr") from None
    if entry.port is not None and not 0 < entry.port <= 65535:
        raise InputError(f"{entry.port} is not a port", where="--port")
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO exceptions (name, path_glob, host, user, cidr, port, expires_at, reason, "
            "created_at, matched) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (
                entry.name,
                entry.path_glob,
                entry.host,
                entry.user,
                str(ipaddress.ip_network(entry.cidr, strict=False)) if entry.cidr else None,
                entry.port,
                entry.expires_at,
                entry.reason,
                int(time.time()),
            ),
        )
        return int(cursor.lastrowid or 0)


def list_exceptions(store: Store) -> list[dict[str, object]]:
    """Every exception with its match count."""
    cursor = store.conn.execute(
        "SELECT id, name, path_glob, host, user, cidr, port, expires_at, reason, created_at, "
        "matched FROM exceptions ORDER BY id"
    )
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def remove_exception(store: Store, exception_id: int) -> bool:
    """Delete an exception; False when there was none with that id."""
    with store.transaction() as conn:
        return conn.execute("DELETE FROM exceptions WHERE id = ?", (exception_id,)).rowcount > 0


def active_exceptions(store: Store, at: int) -> list[Exception_]:
    """Exceptions not expired at data time `at`."""
    rows = store.conn.execute(
        "SELECT id, name, path_glob, host, user, cidr, port, expires_at, reason FROM exceptions "
        "WHERE expires_at IS NULL OR expires_at > ?",
        (at,),
    ).fetchall()
    return [Exception_(*row) for row in rows]
