"""The console's inventory pages: hosts, binaries and webhooks, each searchable by
substring and each with a JSON twin (`?format=json`) for scripts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rarenet.baseline.config import Config
from rarenet.baseline.deliver.webhooks import configured_webhooks
from rarenet.baseline.store import Store, contains
from rarenet.baseline.units import format_time

LISTED = 500  # rows a page lists (the total is always counted)
QUIET = 3600  # a host without data in the fleet's newest hour is quiet


@dataclass(frozen=True)
class HostRow:
    host: str
    last_bucket: int
    quiet: bool  # no data in the fleet's newest hour
    signals: int
    open_signals: int  # not closed (baseline/triage.py)

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "last_seen": format_time(self.last_bucket),
            "quiet": self.quiet,
            "signals": self.signals,
            "open_signals": self.open_signals,
        }


@dataclass(frozen=True)
class HostList:
    query: str
    rows: tuple[HostRow, ...]
    total: int
    newest: int | None  # the fleet's newest bucket

    def as_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "total": self.total,
            "listed": len(self.rows),
            "newest_bucket": format_time(self.newest) if self.newest is not None else None,
            "hosts": [row.as_json() for row in self.rows],
        }


def host_list(store: Store, span: int, query: str = "") -> HostList:
    """Every host that sent data (the quiet ones first, then by name), matching `query`."""
    conn = store.conn
    newest = conn.execute(
        "SELECT max(bucket) FROM fleet_bucket WHERE span = ?", (span,)
    ).fetchone()[0]
    quiet_before = (int(newest) + span - QUIET) if newest is not None else 0
    where, params = "h.span = ? AND h.host LIKE ? ESCAPE '\\'", [span, contains(query)]
    total = conn.execute(f"SELECT count(*) FROM host_last AS h WHERE {where}", params).fetchone()[0]
    rows = conn.execute(
        "SELECT h.host, h.last_bucket, coalesce(c.signals, 0), "
        "(SELECT count(*) FROM signals s LEFT JOIN signal_triage t ON t.signal_id = s.id "
        " WHERE s.host = h.host AND coalesce(t.state, 'open') != 'closed') "
        f"FROM host_last AS h LEFT JOIN signal_host AS c ON c.host = h.host WHERE {where} "
        f"ORDER BY h.last_bucket < ? DESC, h.host LIMIT {LISTED}",
        [*params, quiet_before],
    ).fetchall()
    return HostList(
        query,
        tuple(
            HostRow(str(h), int(last), int(last) < quiet_before, int(n), int(o))
            for h, last, n, o in rows
        ),
        int(total),
        None if newest is None else int(newest),
    )


@dataclass(frozen=True)
class BinaryRow:
    name: str
    path: str
    hosts: int  # hosts that used the path with the network in the baseline window
    last_bucket: int | None

    @property
    def key(self) -> str:
        return self.path or self.name

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "hosts": self.hosts,
            "last_seen": format_time(self.last_bucket) if self.last_bucket is not None else None,
        }


@dataclass(frozen=True)
class BinaryList:
    query: str
    rows: tuple[BinaryRow, ...]
    total: int

    def as_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "total": self.total,
            "listed": len(self.rows),
            "binaries": [row.as_json() for row in self.rows],
        }


def binary_list(store: Store, span: int, query: str = "") -> BinaryList:
    """Every (name, path) that used the network, matching `query` in its name or path
    (`pyth` finds /usr/bin/python3.11), most widespread first."""
    pattern = contains(query)
    where = "n.span = ? AND (n.name LIKE ? ESCAPE '\\' OR n.path LIKE ? ESCAPE '\\')"
    params = [span, pattern, pattern]
    total = store.conn.execute(
        f"SELECT count(*) FROM name_path AS n WHERE {where}", params
    ).fetchone()[0]
    rows = store.conn.execute(
        "SELECT n.name, n.path, count(k.host), max(k.last_bucket) FROM name_path AS n "
        "LEFT JOIN key_host AS k ON k.span = n.span AND k.kind = 'path' AND k.key = n.path "
        f"WHERE {where} GROUP BY n.name, n.path ORDER BY count(k.host) DESC, n.path, n.name "
        f"LIMIT {LISTED}",
        params,
    ).fetchall()
    return BinaryList(
        query,
        tuple(
            BinaryRow(str(name), str(path), int(hosts), None if last is None else int(last))
            for name, path, hosts, last in rows
        ),
        int(total),
    )


@dataclass(frozen=True)
class WebhookRow:
    name: str
    format: str
    states: dict[str, int]  # deliveries by state
    last_delivered: float | None
    last_error: str | None  # of a delivery failing now (none once it recovered)

    @property
    def failing(self) -> bool:
        """Still retrying, or gave up on a signal after its last success."""
        return self.last_error is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "deliveries": self.states,
            "failing": self.failing,
            "last_delivered": format_time(int(self.last_delivered))
            if self.last_delivered is not None
            else None,
            "last_error": self.last_error,
        }


def webhook_list(store: Store, config: Config) -> list[WebhookRow]:
    """Each configured webhook (by name: URLs carry secrets and are never shown) with its
    deliveries by state, its last delivery and its last error."""
    found = []
    for hook in configured_webhooks(config):
        states = {
            str(state): int(count)
            for state, count in store.conn.execute(
                "SELECT state, count(*) FROM deliveries WHERE webhook = ? GROUP BY state",
                (hook.name,),
            )
        }
        last = store.conn.execute(
            "SELECT max(delivered_at) FROM deliveries WHERE webhook = ?", (hook.name,)
        ).fetchone()[0]
        # failing now: a delivery still retrying, or one given up after the last success
        error = store.conn.execute(
            "SELECT last_error FROM deliveries WHERE webhook = ? AND last_error IS NOT NULL "
            "AND (state = 'retrying' OR (state IN ('failed', 'dead') "
            "AND coalesce(last_attempt_at, 0) > coalesce(?, 0))) "
            "ORDER BY last_attempt_at DESC LIMIT 1",
            (hook.name, last),
        ).fetchone()
        found.append(
            WebhookRow(hook.name, hook.format, states, last, None if error is None else error[0])
        )
    return found
