"""Signals in a store and webhook configs for delivery tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from rarenet.baseline.config import Config, WebhookSettings
from rarenet.baseline.deliver.examples import example_document
from rarenet.baseline.store import Store


def add_signal(store: Store, created_at: float, **overrides: Any) -> str:
    """Commit one signal (as the rule does) and return its id."""
    doc = example_document(**overrides)
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO signals (id, rule, host, name, path, bucket, run_id, created_at, "
            "score, initial_score, document, suppressed_count) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, 0)",
            (
                doc["id"],
                doc["rule"]["id"],
                doc["host"]["name"],
                doc["process"]["name"],
                doc["process"]["executable"] or "",
                1768212000,
                created_at,
                doc["score"],
                doc["initial_score"],
                orjson.dumps(doc).decode(),
            ),
        )
    return str(doc["id"])


def add_signals(store: Store, count: int, created_at: float, prefix: str = "web") -> list[str]:
    return [add_signal(store, created_at, host=f"{prefix}-{i:03d}") for i in range(count)]


def with_webhooks(config: Config, *hooks: dict[str, Any]) -> Config:
    """`config` with these `[[webhooks]]` tables (keyword values as in rarenet.toml)."""
    return replace(config, webhooks=tuple(WebhookSettings(**hook) for hook in hooks))


def states(store: Store, webhook: str | None = None) -> dict[str, str]:
    sql = "SELECT signal_id, state FROM deliveries"
    rows = (
        store.conn.execute(sql + " WHERE webhook = ?", (webhook,))
        if webhook
        else store.conn.execute(sql)
    ).fetchall()
    return {str(sid): str(state) for sid, state in rows}
