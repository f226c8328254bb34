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
    """id → (score, host, document) of every stored signal."""
    return {
        sid: (score, host, orjson.loads(doc))
        for sid, score, host, doc in store.conn.execute(
            "SELECT id, score, host, document FROM signals"
        )
    }


class Switchable(LocalSource):
    """A shard that can be switched off, as an unreachable remote shard is."""

    up = True

    def refresh(self, span: int) -> int:
        if not self.up:
            raise ShardUnavailable("connection refused")
        return super().refresh(span)
