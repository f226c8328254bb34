"""A shard's presence asked over HTTP: `POST /v1/shard` on the shard's `rarenet serve`.

Each call is one batch (`{"op": method, "args": {...}}` → `{"result": ...}`) answered by
the shard's `LocalSource` with the same method, so a remote shard gives exactly what a
local one would (baseline/detect/source.py). HTTP rather than a NATS KV bucket of
published aggregates: the rule's questions depend on the run (caps from the merged fleet
size, the candidates' own keys), and asking them live gives exact numbers with no
staleness and nothing to keep in step. The shard's ingest token authorises the call.
"""

from __future__ import annotations

from typing import Any

import requests

from rarenet.baseline.detect.source import ShardUnavailable

SHARD_OPS = frozenset(
    {
        "refresh",
        "candidates",
        "fleet_buckets",
        "key_buckets",
        "hosts_in_window",
        "hosts_in_bucket",
        "pair_stats",
        "suspect_usage",
        "peer_uses",
        "name_elsewhere",
        "clean_bounds",
        "first_remotes",
        "remembered",
        "first_endpoints",
        "destination_hosts",
        "binary_users",
        "shell_destinations",
        "detail",
        "observations_in",
        "last_seen",
        "data_end",
        "fold_mark",
        "backlog",
        "pending_candidates",
        "settle",
        "drop_too_old",
    }
)


class RemoteSource:
    """One shard behind `url` (its `rarenet serve`), asked with `token`."""

    def __init__(self, url: str, token: str | None, name: str | None = None, timeout: float = 120):
        self.url = url.rstrip("/") + "/v1/shard"
        self.name = name or url
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _ask(self, op: str, **args: Any) -> Any:
        try:
            response = self.session.post(
                self.url, json={"op": op, "args": args}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise ShardUnavailable(f"{type(exc).__name__}") from None
        if response.status_code != 200:
            try:
                why = response.json().get("error", "")
            except ValueError:
                why = ""
            raise ShardUnavailable(f"HTTP {response.status_code} {why}".strip())
        return response.json()["result"]

    def refresh(self, span: int) -> int:
        return int(self._ask("refresh", span=span))

    def candidates(self, span: int, low: int, high: int) -> Any:
        return self._ask("candidates", span=span, low=low, high=high)

    def fleet_buckets(self, span: int, low: int, high: int) -> Any:
        return self._ask("fleet_buckets", span=span, low=low, high=high)

    def key_buckets(self, span: int, ranges: Any) -> Any:
        return self._ask("key_buckets", span=span, ranges=ranges)

    def hosts_in_window(self, span: int, ranges: Any) -> Any:
        return self._ask("hosts_in_window", span=span, ranges=ranges)

    def hosts_in_bucket(self, span: int, keys: Any) -> Any:
        return self._ask("hosts_in_bucket", span=span, keys=keys)

    def pair_stats(self, span: int, history: int, rows: Any, rare: Any, until: Any = None) -> Any:
        return self._ask(
            "pair_stats", span=span, history=history, rows=rows, rare=rare, until=until
        )

    def name_elsewhere(self, span: int, history: int, rows: Any) -> Any:
        return self._ask("name_elsewhere", span=span, history=history, rows=rows)

    def peer_uses(self, span: int, history: int, asks: Any) -> Any:
        return self._ask("peer_uses", span=span, history=history, asks=asks)

    def suspect_usage(self, span: int, history: int, asks: Any) -> Any:
        return self._ask("suspect_usage", span=span, history=history, asks=asks)

    def clean_bounds(self, span: int, asks: Any) -> Any:
        return self._ask("clean_bounds", span=span, asks=asks)

    def first_remotes(self, first_ids: Any) -> Any:
        return self._ask("first_remotes", first_ids=first_ids)

    def first_endpoints(self, first_ids: Any) -> Any:
        return self._ask("first_endpoints", first_ids=first_ids)

    def destination_hosts(self, span: int, asks: Any) -> Any:
        return self._ask("destination_hosts", span=span, asks=asks)

    def binary_users(self, span: int, asks: Any) -> Any:
        return self._ask("binary_users", span=span, asks=asks)

    def remembered(self, span: int, pairs: Any) -> Any:
        return self._ask("remembered", span=span, pairs=pairs)

    def shell_destinations(self, span: int, pairs: Any) -> Any:
        return self._ask("shell_destinations", span=span, pairs=pairs)

    def detail(self, first_id: int) -> Any:
        return self._ask("detail", first_id=first_id)

    def observations_in(self, start: int, end: int) -> int:
        return int(self._ask("observations_in", start=start, end=end))

    def last_seen(self, span: int, host: str, exe: str, before: int) -> Any:
        return self._ask("last_seen", span=span, host=host, exe=exe, before=before)

    def data_end(self, span: int) -> Any:
        return self._ask("data_end", span=span)

    def fold_mark(self, span: int) -> int:
        return int(self._ask("fold_mark", span=span))

    def backlog(self, span: int, low: int, high: int, mark: int) -> Any:
        return self._ask("backlog", span=span, low=low, high=high, mark=mark)

    def pending_candidates(self, span: int, bucket: int, mark: int) -> Any:
        return self._ask("pending_candidates", span=span, bucket=bucket, mark=mark)

    def settle(self, span: int, low: int, high: int, mark: int) -> int:
        return int(self._ask("settle", span=span, low=low, high=high, mark=mark))

    def drop_too_old(self, span: int, before: int, run_at: int) -> int:
        return int(self._ask("drop_too_old", span=span, before=before, run_at=run_at))
