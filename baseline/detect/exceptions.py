"""Exceptions (allow list): name, path glob, host, user, destination CIDR, port, expiry.

Every field that is set must match (unset fields match anything). Matched candidates
are counted on the run and on the exception itself, never silently dropped.

An exception cannot blind quietly: before it is stored, `preview` counts what it would
have excepted over the baseline history; a *broad* one (it pins neither the binary nor
a destination network, see `broad_reason`) is refused unless confirmed; every one
expires (at most `[detect] exception_max_age`), and who added it is kept.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson

from rarenet.baseline.access.audit import cli_principal, record
from rarenet.baseline.access.roles import Principal
from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store, contains
from rarenet.baseline.units import format_duration, format_time

# Binaries an attacker typically uses: an exception whose name or path glob matches two
# or more of them does not pin a binary (docs/operations.md#exceptions).
PROBE_PATHS = (
    "/usr/bin/bash", "/bin/sh", "/usr/bin/python3", "/usr/bin/perl", "/usr/bin/nc",
    "/usr/sbin/sshd", "/usr/local/bin/x", "/tmp/x", "/tmp/.x/x", "/var/tmp/x",
    "/dev/shm/x", "/home/user/x",
)  # fmt: skip
PROBE_NAMES = ("bash", "sh", "python3", "perl", "nc", "socat", "curl", "sshd", "x")
NARROWEST_BROAD_PREFIX = {4: 16, 6: 32}  # a CIDR at least this long pins a destination
PREVIEW_ROWS = 2_000_000  # candidates looked at by a preview, at most

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


def broad_reason(entry: Exception_) -> str | None:
    """Why `entry` is broad (it pins neither a binary nor a destination network), or
    None when it is narrow enough to store without confirmation."""

    def matches_many(pattern: str | None, probes: tuple[str, ...]) -> bool:
        return pattern is not None and sum(fnmatch.fnmatchcase(p, pattern) for p in probes) >= 2

    pins_binary = (entry.name is not None and not matches_many(entry.name, PROBE_NAMES)) or (
        entry.path_glob is not None and not matches_many(entry.path_glob, PROBE_PATHS)
    )
    if pins_binary:
        return None
    if entry.cidr is not None:
        network = ipaddress.ip_network(entry.cidr, strict=False)
        if network.prefixlen >= NARROWEST_BROAD_PREFIX[network.version]:
            return None
    if entry.name is not None or entry.path_glob is not None:
        return f"its name/path glob matches common attacker tools (e.g. bash, nc, /tmp/x): {entry.describe()}"
    return f"it names no binary and no destination network: {entry.describe()}"


@dataclass(frozen=True)
class Preview:
    """What an exception would have excepted over the baseline history."""

    since: int
    signals: int  # signals in the outbox it matches
    candidates: int  # host-buckets of a binary with the network it matches
    hosts: int
    binaries: tuple[str, ...]  # the most frequent, at most 10
    partial: bool  # stopped after PREVIEW_ROWS candidates

    def describe(self) -> str:
        some = ", ".join(self.binaries[:5]) + (" …" if len(self.binaries) > 5 else "")
        return (
            f"over the history since {format_time(self.since)} it would have hidden "
            f"{self.signals} signal{'s' if self.signals != 1 else ''} and "
            f"{'at least ' if self.partial else ''}{self.candidates} candidate host-buckets "
            f"on {self.hosts} host{'s' if self.hosts != 1 else ''}" + (f" ({some})" if some else "")
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "signals": self.signals,
            "candidates": self.candidates,
            "hosts": self.hosts,
            "binaries": list(self.binaries),
            "partial": self.partial,
        }


def preview(store: Store, entry: Exception_, since: int) -> Preview:
    """Count the stored signals and the candidates (presence host-buckets, with the
    first connection's user and destination) from `since` on that `entry` matches."""
    signals = 0
    for document, host, name, path in store.conn.execute(
        "SELECT document, host, name, path FROM signals WHERE bucket >= ?", (since,)
    ):
        doc = orjson.loads(document)
        if matches_document(entry, doc, host, name, path):
            signals += 1
    candidates, partial = 0, False
    hosts: set[str] = set()
    binaries: dict[str, int] = {}
    cursor = store.conn.execute(
        "SELECT p.host, p.name, p.path, o.username, o.remote_address, o.remote_port "
        "FROM presence AS p LEFT JOIN observations AS o ON o.id = p.first_id "
        "WHERE p.bucket >= ?",
        (since,),
    )
    for seen, (host, name, path, user, address, port) in enumerate(cursor):
        if seen >= PREVIEW_ROWS:
            partial = True
            break
        if entry.matches(
            name=name, path=path, host=host, user=user or "", address=address or "",
            port=int(port or 0),
        ):  # fmt: skip
            candidates += 1
            hosts.add(host)
            key = path or name
            binaries[key] = binaries.get(key, 0) + 1
    top = sorted(binaries, key=lambda k: (-binaries[k], k))[:10]
    return Preview(since, signals, candidates, len(hosts), tuple(top), partial)


def matches_document(
    entry: Exception_, doc: dict[str, Any], host: str, name: str, path: str
) -> bool:
    """Whether `entry` matches a signal document's connection (its user and destination)."""
    user = (doc.get("user") or {}).get("name") or ""
    destination = doc.get("destination") or {}
    try:
        port = int(destination.get("port") or 0)
    except (TypeError, ValueError):
        port = 0
    return entry.matches(
        name=name, path=path, host=host, user=str(user), address=str(destination.get("ip") or ""),
        port=port,
    )  # fmt: skip


class BroadException(InputError):
    """A broad exception was not confirmed; the message says what it would hide."""


@dataclass(frozen=True)
class Added:
    id: int
    entry: Exception_
    preview: Preview
    broad: str | None


def add_exception(
    store: Store,
    entry: Exception_,
    *,
    by: Principal | None = None,
    confirm_broad: bool = False,
    max_age: float = 90 * 86400.0,
    history: float = 14 * 86400.0,
    now: float | None = None,
    about: str | None = None,
) -> Added:
    """Check, preview and store an exception (recorded in the audit trail).

    The expiry defaults to, and may not exceed, now + `max_age` (0: no cap); the preview
    covers `history` before the newest stored data; a broad exception raises
    BroadException unless `confirm_broad`. `about` (e.g. `signal:ID`, the signal it was
    made from) gets an audit row of its own in the same transaction."""
    _validate(entry)
    now = time.time() if now is None else now
    if max_age > 0:
        latest = int(now + max_age)
        if entry.expires_at is None:
            entry = replace(entry, expires_at=latest)
        elif entry.expires_at > latest:
            raise InputError(
                f"expires {format_time(entry.expires_at)}, later than the "
                f"{format_duration(max_age)} an exception may last",
                where="--expires",
                hint="renew it when it expires, or raise [detect] exception_max_age",
            )
    broad = broad_reason(entry)
    newest = store.conn.execute("SELECT max(time) FROM observations").fetchone()[0]
    shown = preview(store, entry, int((now if newest is None else newest) - history))
    if broad is not None and not confirm_broad:
        raise BroadException(
            f"refused a broad exception: {broad}; {shown.describe()}",
            hint="narrow it with --path/--name or --cidr, or confirm with --broad "
            "(the console's confirmation box)",
        )
    who = by or cli_principal()
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO exceptions (name, path_glob, host, user, cidr, port, expires_at, reason, "
            "created_at, matched, created_by, broad) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (
                entry.name,
                entry.path_glob,
                entry.host,
                entry.user,
                str(ipaddress.ip_network(entry.cidr, strict=False)) if entry.cidr else None,
                entry.port,
                entry.expires_at,
                entry.reason,
                int(now),
                who.name,
                int(broad is not None),
            ),
        )
        number = int(cursor.lastrowid or 0)
        record(
            conn,
            who,
            "exception.add",
            f"exception:{number}",
            {
                "summary": entry.describe(),
                "reason": entry.reason,
                "broad": broad is not None,
                "expires_at": entry.expires_at,
                "preview": shown.as_json(),
            },
        )
        if about is not None:
            record(conn, who, "exception.add", about,
                   {"summary": f"exception #{number}: {entry.describe()}"})  # fmt: skip
    return Added(number, replace(entry, id=number), shown, broad)


def _validate(entry: Exception_) -> None:
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


def list_exceptions(store: Store, query: str = "") -> list[dict[str, object]]:
    """Every exception with its match count; with `query`, those where it is part of a
    field, the reason or who added it."""
    searched = " || char(10) || ".join(
        f"coalesce({c}, '')" for c in ("name", "path_glob", "host", "user", "cidr", "port",
                                       "reason", "created_by")
    )  # fmt: skip
    cursor = store.conn.execute(
        "SELECT id, name, path_glob, host, user, cidr, port, expires_at, reason, created_at, "
        f"matched, created_by, broad FROM exceptions WHERE {searched} LIKE ? ESCAPE '\\' "
        "ORDER BY id",
        (contains(query),),
    )
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def remove_exception(store: Store, exception_id: int, by: Principal | None = None) -> bool:
    """Delete an exception (recorded in the audit trail); False when there was none."""
    with store.transaction() as conn:
        removed = conn.execute("DELETE FROM exceptions WHERE id = ?", (exception_id,)).rowcount > 0
        if removed:
            record(conn, by or cli_principal(), "exception.remove", f"exception:{exception_id}")
        return removed


def active_exceptions(store: Store, at: int) -> list[Exception_]:
    """Exceptions not expired at data time `at`."""
    rows = store.conn.execute(
        "SELECT id, name, path_glob, host, user, cidr, port, expires_at, reason FROM exceptions "
        "WHERE expires_at IS NULL OR expires_at > ?",
        (at,),
    ).fetchall()
    return [Exception_(*row) for row in rows]


@dataclass(frozen=True)
class ExceptedShare:
    """What exceptions removed over the last day of runs (by data time)."""

    candidates: int
    excepted: int

    @property
    def share(self) -> float:
        return self.excepted / self.candidates if self.candidates else 0.0


def excepted_last_day(store: Store) -> ExceptedShare:
    """Candidates and excepted candidates summed over the runs of the newest day."""
    row = store.conn.execute(
        "SELECT coalesce(sum(candidates), 0), coalesce(sum(excepted), 0) FROM runs "
        "WHERE data_time > (SELECT max(data_time) FROM runs) - 86400"
    ).fetchone()
    return ExceptedShare(int(row[0]), int(row[1]))


def broad_exceptions(store: Store, at: float | None = None) -> list[dict[str, object]]:
    """Exceptions stored with --broad (confirmed) that have not expired at `at`."""
    at = time.time() if at is None else at
    return [
        entry
        for entry in list_exceptions(store)
        if entry["broad"] and (entry["expires_at"] is None or float(str(entry["expires_at"])) > at)
    ]
