"""The audit trail: every state change and sign-in failure, with who, when, from where
and what. Rows are only ever added."""

from __future__ import annotations

import getpass
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import orjson

from rarenet.baseline.access.roles import Principal
from rarenet.baseline.store import Store

MAX_LIST = 10_000


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    via: str
    address: str
    action: str
    target: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "via": self.via,
            "address": self.address,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }

    def describe(self) -> str:
        """One line: what was done to what, e.g. `exception.add exception:3 path /x`."""
        summary = self.detail.get("summary", "")
        return f"{self.action} {self.target}" + (f" ({summary})" if summary else "")


def cli_principal() -> Principal:
    """The person at a shell on the server: `cli:<login>` (they can open the store, so
    they hold every role)."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Principal(name=f"cli:{login}", role="admin", via="cli", address="local")


def record(
    conn: sqlite3.Connection,
    who: Principal,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    *,
    now: float | None = None,
) -> None:
    """Add one row inside the caller's transaction (so the change and its record commit
    together)."""
    conn.execute(
        "INSERT INTO audit (at, actor, via, address, action, target, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            time.time() if now is None else now,
            who.name[:200],
            who.via,
            who.address[:100],
            action,
            target[:300],
            orjson.dumps(detail or {}).decode(),
        ),
    )


def record_now(store: Store, who: Principal, action: str, target: str, **detail: Any) -> None:
    """Record in a transaction of its own (sign-in failures: nothing else changes)."""
    with store.transaction() as conn:
        record(conn, who, action, target, detail)


def list_audit(
    store: Store, *, limit: int = 200, target: str | None = None, action: str | None = None
) -> list[AuditEntry]:
    """Newest first; `target` (e.g. `signal:<id>`) and `action` narrow it."""
    clauses, args = [], []
    if target is not None:
        clauses.append("target = ?")
        args.append(target)
    if action is not None:
        clauses.append("action = ?")
        args.append(action)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = store.conn.execute(
        f"SELECT id, at, actor, via, address, action, target, detail FROM audit {where} "
        "ORDER BY id DESC LIMIT ?",
        (*args, max(1, min(limit, MAX_LIST))),
    ).fetchall()
    return [
        AuditEntry(int(i), float(at), a, v, ad, ac, t, orjson.loads(d))
        for i, at, a, v, ad, ac, t, d in rows
    ]
