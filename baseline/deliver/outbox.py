"""The signal outbox: `signals` rows and their per-webhook `deliveries` rows.

A signal is committed by the rule before any delivery is tried. Each configured webhook
gets one `deliveries` row per signal, whose `state` is one of:

* `pending`   — queued, not yet attempted (or reset by `rarenet signals redeliver`);
* `retrying`  — attempted, failed in a way worth retrying; `next_attempt_at` says when;
* `delivered` — a 2xx arrived (`delivered_at`); never set before that;
* `failed`    — permanent failure (a 4xx other than 408/425/429, a redirect, a bad URL);
* `dead`      — still undelivered `dead_letter_after` after it was queued.

`last_status` / `last_error` keep the most recent HTTP status and error on every state;
rows are never deleted. Every state change commits on its own (`Store.transaction`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store
from rarenet.baseline.triage import Triage, triage_of
from rarenet.baseline.units import format_time

PENDING, RETRYING, DELIVERED, FAILED, DEAD = "pending", "retrying", "delivered", "failed", "dead"
STATES = (PENDING, RETRYING, DELIVERED, FAILED, DEAD)
OPEN_STATES = (PENDING, RETRYING)
# A webhook seen for the first time is sent the signals created in this window before
# (so a signal committed just before the first delivery pass is not skipped), never all
# history; `rarenet signals redeliver ID --webhook NAME` sends older ones.
FIRST_SIGHT_BACKFILL = 3600.0
ERROR_LIMIT = 500  # characters of an error kept in `last_error`
_SINCE_KEY = "deliver.webhook_since."


@dataclass(frozen=True)
class DeliveryState:
    """Where one signal stands with one webhook."""

    webhook: str
    state: str
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    delivered_at: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "webhook": self.webhook,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at if self.state in OPEN_STATES else None,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at,
        }


@dataclass(frozen=True)
class SignalRecord:
    """A stored signal with its delivery state per webhook."""

    id: str
    host: str
    name: str
    path: str
    bucket: int
    score: float
    initial_score: float
    created_at: float
    document: dict[str, Any]
    deliveries: tuple[DeliveryState, ...] = ()
    triage: Triage = Triage()

    def as_json(self) -> dict[str, Any]:
        """What `rarenet signals show --json` and `GET /v1/signals` print."""
        return {
            "id": self.id,
            "host": self.host,
            "name": self.name,
            "path": self.path,
            "bucket": self.bucket,
            "score": self.score,
            "initial_score": self.initial_score,
            "created_at": self.created_at,
            "created": format_time(self.created_at),
            "state": summary_state(self.deliveries),
            "deliveries": [d.as_json() for d in self.deliveries],
            "triage": self.triage.as_json(),
            "document": self.document,
        }


def summary_state(deliveries: Iterable[DeliveryState]) -> str:
    """One word for a signal: the worst state among its webhooks (`none` without any)."""
    states = {d.state for d in deliveries}
    for state in (DEAD, FAILED, RETRYING, PENDING, DELIVERED):
        if state in states:
            return state
    return "none"


_SIGNAL_COLUMNS = "id, host, name, path, bucket, score, initial_score, created_at, document"
_DELIVERY_COLUMNS = (
    "webhook, state, attempts, next_attempt_at, last_status, last_error, delivered_at"
)


def _record(row: tuple[Any, ...], deliveries: tuple[DeliveryState, ...] = ()) -> SignalRecord:
    sid, host, name, path, bucket, score, initial, created, text = row
    try:
        document = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        document = {}
    return SignalRecord(
        id=str(sid),
        host=str(host),
        name=str(name),
        path=str(path),
        bucket=int(bucket),
        score=float(score),
        initial_score=float(initial),
        created_at=float(created or 0.0),
        document=document if isinstance(document, dict) else {},
        deliveries=deliveries,
    )


def deliveries_of(store: Store, sid: str) -> tuple[DeliveryState, ...]:
    rows = store.conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE signal_id = ? ORDER BY webhook",
        (sid,),
    ).fetchall()
    return tuple(
        DeliveryState(
            webhook=str(w),
            state=str(s),
            attempts=int(a),
            next_attempt_at=float(n),
            last_status=None if ls is None else int(ls),
            last_error=le,
            delivered_at=da,
        )
        for w, s, a, n, ls, le, da in rows
    )


def list_signals(
    store: Store, *, limit: int = 100, since: float | None = None, state: str | None = None
) -> list[SignalRecord]:
    """Signals newest first in data time (their bucket; then by creation) — or, with
    `since`, those created at/after it, newest created first — optionally with at least
    one delivery in `state` (`none`: signals without any delivery row). A late host's
    signal sorts where its data belongs."""
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append("s.created_at >= ?")
        params.append(since)
    if state == "none":
        where.append("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.signal_id = s.id)")
    elif state is not None:
        if state not in STATES:
            raise InputError(f"unknown state {state!r}", hint=f"use one of {', '.join(STATES)}")
        where.append("EXISTS (SELECT 1 FROM deliveries d WHERE d.signal_id = s.id AND d.state = ?)")
        params.append(state)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    # a poller moving `since` forward pages by creation: a late host's signal (an older
    # bucket, created now) must not fall off the end of its page
    order = (
        "s.created_at DESC, s.id" if since is not None else "s.bucket DESC, s.created_at DESC, s.id"
    )
    rows = store.conn.execute(
        f"SELECT {', '.join('s.' + c for c in _SIGNAL_COLUMNS.split(', '))} FROM signals s "
        f"{clause} ORDER BY {order} LIMIT ?",
        (*params, max(0, limit)),
    ).fetchall()
    triaged = triage_of(store.conn, [str(row[0]) for row in rows])
    return [
        replace(_record(row, deliveries_of(store, str(row[0]))), triage=triaged[str(row[0])])
        for row in rows
    ]


def get_signal(store: Store, key: str) -> SignalRecord:
    """The signal with id `key` (or the only one whose id starts with it, ≥ 6 characters);
    raises InputError when there is none or the prefix is ambiguous."""
    key = key.strip().lower()
    rows = store.conn.execute(
        f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE id = ?", (key,)
    ).fetchall()
    if not rows and len(key) >= 6 and all(c in "0123456789abcdef" for c in key):
        rows = store.conn.execute(
            f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE id >= ? AND id < ? LIMIT 2",
            (key, key + "g"),
        ).fetchall()
    if not rows:
        short = len(key) < 6
        hint = "an id prefix needs at least 6 characters; " if short else ""
        raise InputError(f"no signal with id {key!r}", hint=f"{hint}see `rarenet signals list`")
    if len(rows) > 1:
        raise InputError(f"signal id prefix {key!r} is ambiguous", hint="give more characters")
    sid = str(rows[0][0])
    return replace(
        _record(rows[0], deliveries_of(store, sid)), triage=triage_of(store.conn, [sid])[sid]
    )


# -- queueing -----------------------------------------------------------------------------


def webhook_since(store: Store, webhook: str, now: float) -> float:
    """Signals created at or after this are queued for `webhook`; set on first sight."""
    key = _SINCE_KEY + webhook
    row = store.conn.execute("SELECT value FROM store_state WHERE key = ?", (key,)).fetchone()
    if row is not None:
        return float(row[0])
    since = now - FIRST_SIGHT_BACKFILL
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO store_state (key, value) VALUES (?, ?)", (key, repr(since))
        )
        value = conn.execute("SELECT value FROM store_state WHERE key = ?", (key,)).fetchone()[0]
    return float(value)


def enqueue(store: Store, webhooks: Iterable[str], now: float) -> int:
    """Give every signal created since each webhook's first sight a row for it."""
    queued = 0
    for webhook in webhooks:
        since = webhook_since(store, webhook, now)
        missing = store.conn.execute(
            "SELECT 1 FROM signals s WHERE s.created_at >= ? AND NOT EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.signal_id = s.id AND d.webhook = ?) LIMIT 1",
            (since, webhook),
        ).fetchone()
        if missing is None:
            continue
        with store.transaction() as conn:
            queued += conn.execute(
                "INSERT OR IGNORE INTO deliveries (signal_id, webhook, state, attempts, "
                "next_attempt_at, queued_at) SELECT s.id, ?, ?, 0, 0, ? FROM signals s "
                "WHERE s.created_at >= ?",
                (webhook, PENDING, now, since),
            ).rowcount
    return queued


def expire(store: Store, webhook: str, dead_letter_after: float, now: float) -> int:
    """Dead-letter open rows queued more than `dead_letter_after` ago (last error kept)."""
    cutoff = now - dead_letter_after
    if not store.conn.execute(
        "SELECT 1 FROM deliveries WHERE webhook = ? AND state IN (?, ?) AND queued_at <= ? LIMIT 1",
        (webhook, PENDING, RETRYING, cutoff),
    ).fetchone():
        return 0  # the usual case: no write transaction
    with store.transaction() as conn:
        return conn.execute(
            "UPDATE deliveries SET state = ?, last_error = coalesce(last_error, "
            "'never attempted: the webhook was backing off') "
            "WHERE webhook = ? AND state IN (?, ?) AND queued_at <= ?",
            (DEAD, webhook, PENDING, RETRYING, cutoff),
        ).rowcount


@dataclass(frozen=True)
class Due:
    """A delivery to attempt now: the signal and how many attempts came before."""

    signal: SignalRecord
    attempts: int


def due(store: Store, webhook: str, now: float, limit: int) -> list[Due]:
    """Open rows of `webhook` whose next attempt time has come: earliest first; among
    equals the most-tried first (after a hold it is the probe, so back-off keeps growing)."""
    rows = store.conn.execute(
        f"SELECT {', '.join('s.' + c for c in _SIGNAL_COLUMNS.split(', '))}, d.attempts "
        "FROM deliveries d JOIN signals s ON s.id = d.signal_id "
        "WHERE d.webhook = ? AND d.state IN (?, ?) AND d.next_attempt_at <= ? "
        "ORDER BY d.next_attempt_at, d.attempts DESC, d.queued_at, s.created_at, s.id LIMIT ?",
        (webhook, PENDING, RETRYING, now, limit),
    ).fetchall()
    return [Due(_record(row[:-1]), int(row[-1])) for row in rows]


# -- state transitions (one commit each) --------------------------------------------------


def mark_attempt(
    store: Store,
    sid: str,
    webhook: str,
    *,
    state: str,
    now: float,
    status: int | None,
    error: str | None,
    next_attempt_at: float = 0.0,
) -> None:
    """Record one finished attempt: its outcome, status and error, and what comes next."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, "
            "last_status = ?, last_error = ?, "
            "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END, "
            "first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ? "
            "WHERE signal_id = ? AND webhook = ?",
            (
                state,
                next_attempt_at,
                status,
                None if error is None else error[:ERROR_LIMIT],
                state,
                now,
                now,
                now,
                sid,
                webhook,
            ),
        )


def hold(store: Store, webhook: str, until: float) -> int:
    """The webhook is down or asked us to wait: no open row of it is tried before `until`."""
    with store.transaction() as conn:
        return conn.execute(
            "UPDATE deliveries SET next_attempt_at = ? "
            "WHERE webhook = ? AND state IN (?, ?) AND next_attempt_at < ?",
            (until, webhook, PENDING, RETRYING, until),
        ).rowcount


def redeliver(
    store: Store, sid: str, webhooks: Iterable[str], *, now: float, only: str | None = None
) -> list[str]:
    """Queue signal `sid` again (state pending, attempts 0, same idempotency key) for every
    configured webhook in `webhooks`, or only for `only`; returns the webhook names queued.
    A webhook configured after the signal was created gets its first row this way."""
    names = sorted(set(webhooks))
    if only is not None and only not in names:
        raise InputError(
            f"no configured webhook is named {only!r}",
            hint=f"configured: {', '.join(names) or 'none'}",
        )
    if not names:
        raise InputError("no webhook is configured", hint="add a [[webhooks]] table")
    targets = names if only is None else [only]
    with store.transaction() as conn:
        for webhook in targets:
            conn.execute(
                "INSERT INTO deliveries (signal_id, webhook, state, attempts, next_attempt_at, "
                "queued_at) VALUES (?, ?, ?, 0, 0, ?) ON CONFLICT (signal_id, webhook) DO UPDATE "
                "SET state = excluded.state, attempts = 0, next_attempt_at = 0, "
                "queued_at = excluded.queued_at, delivered_at = NULL, first_attempt_at = NULL",
                (sid, webhook, PENDING, now),
            )
    return targets


@dataclass(frozen=True)
class WebhookTrouble:
    """A webhook's deliveries that are failing: how many, since when, the last error."""

    retrying: int
    since: float  # the first failed attempt of the oldest one (wall time)
    last_error: str


def webhook_trouble(store: Store, webhook: str) -> WebhookTrouble | None:
    """The webhook's deliveries now retrying (None: none are)."""
    count, since, error = store.conn.execute(
        "SELECT count(*), min(first_attempt_at), "
        "(SELECT last_error FROM deliveries WHERE webhook = ? AND state = ? "
        " ORDER BY last_attempt_at DESC LIMIT 1) "
        "FROM deliveries WHERE webhook = ? AND state = ?",
        (webhook, RETRYING, webhook, RETRYING),
    ).fetchone()
    if not count:
        return None
    return WebhookTrouble(int(count), float(since or 0.0), str(error or "unknown error"))
