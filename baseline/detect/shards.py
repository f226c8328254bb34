"""One fleet-wide rule over host-sharded stores, and what a run does when a shard is down.

Each shard owns a disjoint set of hosts (its own SQLite store, fed by its own stream
partition); the detection node asks every shard for its part of the fleet numbers
(baseline/detect/source.py), merges them and scores every shard's candidates with the
merged numbers, so the signals are those one node over all hosts would raise.

A shard that cannot be reached is left out of the run: its hosts are not scored, the
run record says `partial` and names it, and the fleet numbers of that run lack its
hosts. Nothing is lost: the stream keeps the shard's results until it consumes them,
and the detection node remembers per shard the data time through which its hosts were
scored (`store_state`), so once the shard is back the next run reaches back to there
(at most `catch_up` seconds) and scores the missed buckets. Runs are deterministic and
signal ids are hashes of (rule, host, binary, bucket), so a bucket scored twice finds
its signal stored: nothing is duplicated.
"""

from __future__ import annotations

import time
import urllib.parse

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.features import window_buckets
from rarenet.baseline.detect.remote import RemoteSource
from rarenet.baseline.detect.rule import RunResult, detect_once, detect_over
from rarenet.baseline.detect.source import PresenceSource, ShardUnavailable
from rarenet.baseline.errors import ConfigError, RarenetError
from rarenet.baseline.store import Store

__all__ = ["ShardUnavailable", "configured_shards", "detect_configured", "detect_sharded"]

_THROUGH_KEY = "shard_scored_through:{name}"
CATCH_UP_SHARE = 1 / 14  # of `history`: one day by default


def configured_shards(settings: DetectSettings) -> list[PresenceSource]:
    """`[detect] shards` as sources, each named by its host:port (unique)."""
    shards: list[PresenceSource] = []
    for url in settings.shards:
        shard = RemoteSource(
            url,
            settings.shard_token or None,
            name=shard_name(url),
            timeout=settings.shard_timeout,
        )
        if any(known.name == shard.name for known in shards):
            raise ConfigError(f"shard {shard.name} is listed twice", where="[detect] shards")
        shards.append(shard)
    return shards


def shard_name(url: str) -> str:
    """A shard's name in run records and logs: its URL's host:port (never a credential)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{host}:{port}{parts.path.rstrip('/')}"


def detect_configured(
    store: Store, settings: DetectSettings, at: int | None = None, *, refresh: bool = True
) -> RunResult:
    """One run as configured: over `[detect] shards` when set, else over `store` itself."""
    if not settings.shards:
        return detect_once(store, settings, at, refresh=refresh)
    at = int(time.time()) if at is None else int(at)
    return detect_sharded(store, configured_shards(settings), settings, at)


def detect_sharded(
    store: Store,
    shards: list[PresenceSource],
    settings: DetectSettings,
    at: int,
    *,
    catch_up: int | None = None,
) -> RunResult:
    """One run over the shards that answer; catch-up for shards that were behind."""
    span = max(1, int(settings.bucket_span))
    names = [shard.name for shard in shards]
    if len(set(names)) != len(names):
        raise RarenetError(f"shard names must be unique: {names}")
    up, down = [], []
    for shard in shards:
        try:
            shard.refresh(span)
            up.append(shard)
        except ShardUnavailable as exc:
            down.append(f"{shard.name}: {exc}")
    if not up:
        raise ShardUnavailable("no shard answered: " + "; ".join(down))
    through = _scored_through(store, names)
    window_start = window_buckets(at, span, int(settings.lookback))[0]
    reach = int(settings.history * CATCH_UP_SHARE) if catch_up is None else int(catch_up)
    ends = {shard.name: shard.data_end(span) for shard in up}
    # Behind: scored only up to before this window, and holding data past that point
    # (its backlog arrived). A shard with nothing new (idle, or not yet consuming) is not
    # reached back for: that would re-score up to a day of every shard on every run.
    behind = [
        through[name]
        for name, end in ends.items()
        if name in through and through[name] < window_start and (end or 0) > through[name]
    ]
    since = max(min(behind), window_start - reach) if behind else None
    result = detect_over(store, up, settings, at, refresh=False, since=since, down=down)
    with store.transaction() as conn:
        for shard in shards:
            if shard in up:
                end = ends[shard.name]
                value = result.window_end if end is None else min(result.window_end, end)
                value = max(value, window_start) if shard.name not in through else value
            elif shard.name not in through:
                value = window_start  # never scored: from this run's window on
            else:
                continue
            conn.execute(
                "INSERT INTO store_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_THROUGH_KEY.format(name=shard.name), str(value)),
            )
    return result


def _scored_through(store: Store, names: list[str]) -> dict[str, int]:
    found = {}
    for name in names:
        row = store.conn.execute(
            "SELECT value FROM store_state WHERE key = ?", (_THROUGH_KEY.format(name=name),)
        ).fetchone()
        if row is not None:
            found[name] = int(row[0])
    return found
