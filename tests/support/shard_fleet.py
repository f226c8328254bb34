"""What the shard tests share: the rule's run times over a fleet, the signals a store
holds, and a shard that can be switched off as an unreachable one is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from rarenet.baseline.detect.shards import ShardUnavailable
from rarenet.baseline.detect.source import LocalSource
from rarenet.baseline.store import Store


def runs(first: int, last: int, interval: int) -> Iterator[int]:
    """The scheduled runs' data times from the first interval after `first` on."""
    at = (first // interval + 1) * interval
    while at <= last + interval:
        yield at
        at += interval


def signals(store: Store) -> dict[str, tuple[float, str, dict[str, Any]]]:
    """id → (score, host, document) of every stored signal, without `arrival` (when
    rarenet could first see the data depends on delivery, not on the rule)."""
    found = {}
    for sid, score, host, doc in store.conn.execute(
        "SELECT id, score, host, document FROM signals"
    ):
        document = orjson.loads(doc)
        document.pop("arrival")
        found[sid] = (score, host, document)
    return found


def lags(store: Store) -> dict[str, int]:
    """id → arrival lag (seconds after its bucket ended) of every stored signal."""
    return {
        sid: int(lag)
        for sid, lag in store.conn.execute(
            "SELECT id, json_extract(document, '$.arrival.lag_seconds') FROM signals"
        )
    }


class Switchable(LocalSource):
    """A shard that can be switched off, as an unreachable remote shard is."""

    up = True

    def refresh(self, span: int) -> int:
        if not self.up:
            raise ShardUnavailable("connection refused")
        return super().refresh(span)
