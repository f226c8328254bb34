"""Peers: hosts that use the network with mostly the same binaries, learned from the data.

Two hosts are peers when the paths each used with the network in a baseline window are
mostly the same *where it tells hosts apart*: a Jaccard similarity of the two sets of
paths (the binary in question left out) in which each path weighs ln(N / hosts using
it), and a path on a quarter of the fleet or more (at least `MIN_COMMON_HOSTS` hosts)
weighs nothing — the agents every host runs say nothing about a host's role. Peers at
`PEER_SIMILARITY` or more. No role is configured: on a 16-host fleet the two CI runners
are peers (the runner), as are the two database hosts (bash, pg_dump, postgres, restic)
and the five web servers (nginx, the app), and no web server is a database host's.

Used for one decision so far (baseline/detect/suspects.py `settles`): a suspect at a
package-managed path settles when a peer of its host without an open signal for that
binary uses the same path routinely (its uses reach over `PEER_OCCASIONS` half-days of
the window, `spread_occasions`) — a second CI runner's JDK, not a shell that no web
server uses.
"""

from __future__ import annotations

import math
import sqlite3
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rarenet.baseline.detect.source import PresenceSource

PEER_SIMILARITY = 0.5  # Jaccard similarity of two hosts' paths that makes them peers
PEER_OCCASIONS = 3  # half-days a peer's uses reach over that make a path its routine
APP_OCCASIONS = 1  # … for an app a person runs: a peer that runs it at all
COMMON_SHARE = 0.25  # a path on this share of the fleet's hosts is common …
MIN_COMMON_HOSTS = 6  # … and on at least this many
MAX_OTHER_HOSTS = 16  # other hosts using a path that peers are sought among (more: none)


@dataclass(frozen=True)
class PeerUse:
    """Another host's routine use of a suspect's path, and how alike the two hosts are."""

    host: str
    occasions: int
    similarity: float


def peer_uses_in(
    conn: sqlite3.Connection, span: int, history: int, gap: int, ask: Sequence[Any]
) -> list[Any]:
    """For `ask` = (host, path, [bucket, …]): this store's other hosts that used `path`
    in the windows [bucket - history, bucket) — per bucket, [host, occasions] — the
    sets of paths of those hosts and of `host` itself, and how many other hosts there
    are (up to MAX_OTHER_HOSTS + 1, beyond which nothing else is read), as JSON rows
    [[[host, [path, …]], …], [[[host, occasions], …] per bucket], others]."""
    host, path, buckets = ask
    if not buckets:
        return [[], [], 0]
    low, high = min(buckets) - history, max(buckets)
    others = [
        other
        for (other,) in conn.execute(
            "SELECT host FROM key_host WHERE span = ? AND kind = 'path' AND key = ? "
            "AND host != ? AND last_bucket >= ? AND first_bucket < ? LIMIT ?",
            (span, path, host, low, high, MAX_OTHER_HOSTS + 1),
        )
    ]
    if len(others) > MAX_OTHER_HOSTS:  # a path this many hosts use: the fleet's numbers decide
        return [[], [[] for _ in buckets], len(others)]
    uses: list[list[list[Any]]] = [[] for _ in buckets]
    for other in others:
        used = [
            b
            for (b,) in conn.execute(
                "SELECT bucket FROM presence INDEXED BY presence_host_path WHERE span = ? "
                "AND host = ? AND path = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
                (span, other, path, low, high),
            )
        ]
        for at, bucket in enumerate(buckets):
            window = used[bisect_left(used, bucket - history) : bisect_left(used, bucket)]
            if window:
                uses[at].append([other, spread_occasions(window, gap)])
    profiles = []
    for who in [host, *others]:
        paths = [
            key
            for (key,) in conn.execute(
                "SELECT key FROM key_host INDEXED BY key_host_by_host WHERE span = ? "
                "AND host = ? AND kind = 'path' AND last_bucket >= ? AND first_bucket < ?",
                (span, who, low, high),
            )
        ]
        if paths:
            profiles.append([who, paths])
    return [profiles, uses, len(others)]


def merge_answers(answers: Sequence[list[Any]]) -> list[Any]:
    """One ask's answers from several shards as one (hosts live on one shard each); no
    uses at all when the shards' other hosts together pass MAX_OTHER_HOSTS, as one
    store would answer."""
    profiles: list[Any] = []
    uses: list[list[Any]] | None = None
    others = 0
    for shard_profiles, shard_uses, shard_others in answers:
        profiles += shard_profiles
        others += shard_others
        uses = (
            [list(u) for u in shard_uses]
            if uses is None
            else [mine + theirs for mine, theirs in zip(uses, shard_uses, strict=True)]
        )
    if others > MAX_OTHER_HOSTS:
        return [[], [[] for _ in uses or []], others]
    return [profiles, uses or [], others]


def asked(
    sources: Sequence[PresenceSource], span: int, history: int, asks: list[list[Any]]
) -> list[list[Any]]:
    """`peer_uses` of every source for `asks`, merged per ask (`merge_answers`)."""
    if not asks:
        return []
    per_source = [source.peer_uses(span, history, asks) for source in sources]
    return [merge_answers([answers[n] for answers in per_source]) for n in range(len(asks))]


def weights_over(
    sources: Sequence[PresenceSource],
    span: int,
    low: int,
    high: int,
    fleet_hosts: float,
    paths: Sequence[str],
) -> dict[str, float]:
    """`path_weights` of `paths`, the hosts using each in [low, high) counted over the
    sources up to the common level."""
    if not paths:
        return {}
    cap = common_hosts(fleet_hosts)
    ranges = [("path", p, low, high, cap) for p in paths]
    counts = [0] * len(paths)
    for source in sources:
        found = source.hosts_in_window(span, ranges)
        counts = [a + b for a, b in zip(counts, found, strict=True)]
    return path_weights(dict(zip(paths, counts, strict=True)), fleet_hosts)


def common_hosts(fleet_hosts: float) -> int:
    """Hosts using a path that make it common, saying nothing of a host's role."""
    return max(math.ceil(COMMON_SHARE * fleet_hosts), MIN_COMMON_HOSTS)


def path_weights(hosts_using: dict[str, int], fleet_hosts: float) -> dict[str, float]:
    """Each path's weight in a similarity: ln(N / hosts using it), 0 once common."""
    common = common_hosts(fleet_hosts)
    return {
        path: math.log(fleet_hosts / count) if 0 < count < common else 0.0
        for path, count in hosts_using.items()
    }


def similarity(mine: set[str], theirs: set[str], weights: dict[str, float]) -> float:
    """The weighted Jaccard similarity of two hosts' paths, in [0, 1] (0 when neither
    has a path that weighs anything)."""
    union = sum(weights.get(p, 0.0) for p in mine | theirs)
    shared = sum(weights.get(p, 0.0) for p in mine & theirs)
    return shared / union if union > 0 else 0.0


def routine_peer(
    answer: list[Any],
    host: str,
    path: str,
    at: int,
    left_out: set[str],
    weights: dict[str, float],
    least: int = PEER_OCCASIONS,
) -> PeerUse | None:
    """The most alike peer of `host` that used `path` routinely (over `least` half-days
    or more) in bucket `at`'s window (answer of `peer_uses_in`, merged), not counting
    hosts in `left_out` (those with an open signal for the binary); None when there is
    none."""
    profiles = {who: set(paths) - {path} for who, paths in answer[0]}
    mine = profiles.get(host, set())
    best: PeerUse | None = None
    for other, occasions in answer[1][at]:
        if other in left_out or occasions < least:
            continue
        alike = similarity(mine, profiles.get(other, set()), weights)
        if alike >= PEER_SIMILARITY and (best is None or alike > best.similarity):
            best = PeerUse(other, occasions, round(alike, 3))
    return best


def spread_occasions(buckets: Sequence[int], gap: int) -> int:
    """How many `gap`-long stretches sorted buckets of use reach into, each starting at a
    use at least `gap` after the start of the one before: a peer's job used every two
    hours for a day is used on three, as is a nightly one over three nights (a host's
    routine need not pause, unlike a suspect's occasions)."""
    occasions, started = 0, None
    for bucket in buckets:
        if started is None or bucket - started >= gap:
            occasions, started = occasions + 1, bucket
    return occasions


PEERS_SHOWN = 10  # peers `host_peers` names, most alike first


def host_peers(
    sources: Sequence[PresenceSource],
    span: int,
    history: int,
    host: str,
    path: str,
    at: int,
    fleet_hosts: float,
) -> list[PeerUse]:
    """The peers of `host` in the window before data time `at`, most alike first (at most
    PEERS_SHOWN), each with the half-days over which it used `path` (0: not at all) —
    what explain and the console show. Asked of the shards as the rule asks them: who
    else uses each of the host's paths (a path on more than MAX_OTHER_HOSTS other hosts
    makes no peer), and their paths."""
    (first,) = asked(sources, span, history, [[host, path, [at]]])
    profiles = {who: set(paths) for who, paths in first[0]}
    mine = profiles.get(host, set())
    others = asked(sources, span, history, [[host, p, [at]] for p in sorted(mine - {path})])
    for answer in others:
        profiles.update({who: set(paths) for who, paths in answer[0]})
    every_path = sorted(set[str]().union(*profiles.values()))
    weights = weights_over(sources, span, at - history, at, fleet_hosts, every_path)
    using = {other: occasions for other, occasions in (first[1][0] if first[1] else [])}
    found = [
        PeerUse(other, int(using.get(other, 0)), round(alike, 3))
        for other, theirs in profiles.items()
        if other != host
        and (alike := similarity(mine - {path}, theirs - {path}, weights)) >= PEER_SIMILARITY
    ]
    found.sort(key=lambda peer: (-peer.similarity, peer.host))
    return found[:PEERS_SHOWN]
