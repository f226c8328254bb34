"""Gather scoring inputs for the candidates of a window from presence and its aggregates.

Every count is over the baseline window [bucket - history, bucket) of each candidate's
own bucket, so a bucket's score never depends on the run that scored it. Counts that
only matter up to a saturation point are capped in SQL (LIMIT/OFFSET probes), so a run
reads a bounded number of rows per candidate however long the history is.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from rarenet.baseline.detect.detail import detail_from_row
from rarenet.baseline.detect.peers import PeerUse, asked, routine_peer, weights_over
from rarenet.baseline.detect.scoring import (
    MIN_ROLLOUT_HOSTS,
    MIN_ROUTINE_HOSTS,
    ROLLOUT_SHARE,
    ROUTINE_SHARE,
    Array,
    Features,
    key_rarity,
)
from rarenet.baseline.detect.signal import Detail
from rarenet.baseline.detect.source import HOST_PATH_CAP as HOST_PATH_CAP
from rarenet.baseline.detect.source import CappedRange, LocalSource, PresenceSource
from rarenet.baseline.detect.suspects import (
    EMPTY_USAGE,
    NO_SUSPECTS,
    SETTLING_OCCASIONS,
    Suspect,
    Suspects,
    Usage,
    least,
    most,
    settles,
)
from rarenet.baseline.errors import ConfigError
from rarenet.baseline.shells import UNSET_REMOTES, is_plain_shell
from rarenet.baseline.store import Store
from rarenet.extension.locations import Location, classify, may_roll_out, suspicion
from rarenet.extension.scoring import (
    adopting,
    baseline_cover,
    known,
    mature_buckets,
    tenure,
)

if TYPE_CHECKING:
    from rarenet.baseline.detect.binary_users import UserHistory
    from rarenet.baseline.detect.destinations import KnownDestination
    from rarenet.baseline.detect.recurring import UseHistory

# Time scales follow `history` (14 days by default), so compressed drills behave alike:
ESTABLISHED_SHARE = 1 / 14  # a path seen in the fleet this long (1 day) is established


class Candidate(NamedTuple):
    """A host using a binary in a bucket of the look-back window."""

    bucket: int
    host: str
    name: str
    path: str
    first_id: int  # the first observation of it in that bucket (for details)


@dataclass(frozen=True)
class FleetContext:
    """Fleet-wide numbers for one scored bucket."""

    bucket: int
    host_buckets: int  # F
    hosts: int  # N: peak hosts active in one bucket
    buckets: int  # buckets of fleet history (warm-up)
    first_bucket: int | None  # oldest bucket of history in the window


@dataclass(frozen=True)
class Gathered:
    """Candidates, their features (same order) and per-bucket fleet context. First/last
    buckets are floats with NaN for "never seen" (explain turns them into times)."""

    candidates: list[Candidate]
    features: Features
    fleet: dict[int, FleetContext]
    name_first_bucket: Array
    path_first_bucket: Array
    path_last_bucket: Array
    warm: npt.NDArray[np.bool_]  # the candidate's bucket is past warm-up
    sources: tuple[PresenceSource, ...] = ()
    owner: npt.NDArray[np.intp] | None = None  # per candidate: its shard in `sources`
    # per candidate: the open suspect it continues (its binary on its host has an open
    # signal from an earlier bucket, not settled), else None
    held: tuple[Suspect | None, ...] = ()
    # per candidate index asked: its history on its host (baseline/detect/recurring.py)
    histories: dict[int, UseHistory] = field(default_factory=dict)
    # per candidate index asked: its first destination and who used it before
    destinations: dict[int, KnownDestination] = field(default_factory=dict)
    # per candidate index asked: a peer that uses its path routinely (peer_evidence.py)
    peer_uses: dict[int, PeerUse] = field(default_factory=dict)
    # per candidate index asked: its first connection's user, and who ran it before
    users: dict[int, UserHistory] = field(default_factory=dict)

    def suspect(self, i: int) -> Suspect | None:
        """The open suspect candidate i continues, if any (baseline/detect/suspects.py)."""
        return self.held[i] if self.held else None

    def source_of(self, i: int) -> PresenceSource:
        """The shard that holds candidate i's host (one node: its store)."""
        return self.sources[0 if self.owner is None else int(self.owner[i])]

    def by_source(self, indices: Iterable[int]) -> list[tuple[PresenceSource, list[int]]]:
        """Candidate indices grouped by the shard that holds their hosts, each group in
        index order: one batched ask per shard."""
        groups: dict[int, list[int]] = defaultdict(list)
        for i in sorted(set(indices)):
            groups[0 if self.owner is None else int(self.owner[i])].append(i)
        return [(self.sources[shard], mine) for shard, mine in groups.items()]

    def detail(self, i: int) -> Detail | None:
        """Candidate i's first connection, read from the shard that holds its host."""
        return detail_from_row(self.source_of(i).detail(self.candidates[i].first_id))

    def observations_in(self, start: int, end: int) -> int:
        """Observations with time in [start, end) over all shards."""
        return sum(source.observations_in(start, end) for source in self.sources)


def window_buckets(at: int, span: int, lookback: int) -> list[int]:
    """Start times of the complete buckets in [at - lookback, at)."""
    end = (at // span) * span
    count = max(1, lookback // span)
    return [end - span * i for i in range(count, 0, -1)]


def gather(
    store: Store,
    span: int,
    history: int,
    buckets: list[int],
    warmup: int,
    suspects: Suspects = NO_SUSPECTS,
) -> Gathered:
    """Features of every (host, name, path) present in `buckets` of one store."""
    return gather_from([LocalSource(store)], span, history, buckets, warmup, suspects)


def gather_from(
    sources: Sequence[PresenceSource],
    span: int,
    history: int,
    buckets: list[int],
    warmup: int,
    suspects: Suspects = NO_SUSPECTS,
    queued: Sequence[int] | None = None,
) -> Gathered:
    """Features of every (host, name, path) present in `buckets` over the shards
    `sources` (disjoint hosts; one node is one source), leaving out what open
    `suspects` keep out of the baseline (baseline/detect/suspects.py). With `queued`
    (each source's fold mark), only the hosts queued for scoring in the one bucket of
    `buckets` are candidates: a catch-up step (baseline/detect/late.py).

    Per-key numbers are asked once per (key, bucket) and spread to candidates with numpy
    indexing; per-candidate numbers are one SQL pass of index seeks per shard over only
    the candidates that still need one."""
    merged = _merge_candidates(sources, span, buckets, queued)
    rows = merged.rows
    candidates = list(map(Candidate._make, rows))
    fleet = _fleet_contexts(sources, span, history, buckets, warmup)
    keys = _key_stats(sources, span, history, fleet, rows, suspects)
    name_at, path_at, bucket_at = _positions(keys.index, buckets, rows)
    fleet_f = np.array([fleet[b].host_buckets for b in buckets], dtype=float)[bucket_at]
    fleet_n = np.array([fleet[b].hosts for b in buckets], dtype=float)[bucket_at]
    name_f, name_h, name_first = (keys.values[name_at, col] for col in range(3))
    path_f, path_h, path_first, path_last = (keys.values[path_at, col] for col in range(4))
    own = np.where(path_at >= 0, path_at, name_at)  # the key that dates the binary
    rare = _rare(name_f, name_h, path_f, path_h, fleet_f, fleet_n)
    held = tuple(keys.held.get((c.host, c.name, c.path, c.bucket)) for c in candidates)
    until = [
        c.bucket if s is None else min(c.bucket, s.since)
        for c, s in zip(candidates, held, strict=True)
    ]
    host_path, active = _pair_stats(merged, span, history, rare, until)
    mature = mature_buckets(history, span)
    features = Features(
        fleet_host_buckets=fleet_f,
        fleet_hosts=fleet_n,
        path_host_buckets=path_f,
        path_hosts=path_h,
        name_host_buckets=name_f,
        name_hosts=name_h,
        host_path_buckets=host_path,
        host_maturity=np.minimum(active, mature) / mature,
        established=keys.values[own, 4],
        known=keys.values[own, 9],
        tenure=np.where(path_at >= 0, keys.values[own, 7], 1.0),
        recent_hosts=keys.values[own, 5],
        wave_hosts=np.where(path_at >= 0, keys.values[own, 6], 1.0),
        package_managed=_per_binary(rows, lambda name, path: float(may_roll_out(name, path))),
        suspicion=_per_path(rows, suspicion),
        fresh_destination=_fresh_destinations(merged, span, history, active < mature),
        adopting=np.where(path_at >= 0, keys.values[own, 8], 0.0),
        path_elsewhere=keys.values[path_at, 10],
    )
    day = max(span, int(history * ESTABLISHED_SHARE))
    cover = np.array([baseline_cover(day, b, fleet[b].first_bucket) for b in buckets], dtype=float)[
        bucket_at
    ]
    features = replace(
        features,
        name_here=_name_here(merged, span, history, features),
        baseline_cover=cover,
    )
    warm_buckets = np.array([fleet[b].buckets >= warmup for b in buckets], dtype=bool)
    return Gathered(
        candidates,
        features,
        fleet,
        name_first,
        path_first,
        path_last,
        warm_buckets[bucket_at],
        tuple(sources),
        merged.owner,
        held,
    )


@dataclass(frozen=True)
class _Merged:
    """The window's candidates over all shards, in (bucket, host, name, path) order:
    `owner[i]` is the shard of candidate i, `at[k]` the merged positions of shard k's
    rows (in its own order)."""

    sources: tuple[PresenceSource, ...]
    rows: list[Any]
    owner: npt.NDArray[np.intp]
    at: list[npt.NDArray[np.intp]]


def _merge_candidates(
    sources: Sequence[PresenceSource],
    span: int,
    buckets: list[int],
    queued: Sequence[int] | None = None,
) -> _Merged:
    per_shard = (
        [source.candidates(span, buckets[0], buckets[-1]) for source in sources]
        if queued is None
        else [
            source.pending_candidates(span, buckets[0], mark)
            for source, mark in zip(sources, queued, strict=True)
        ]
    )
    if len(per_shard) == 1:
        rows = per_shard[0]
        return _Merged(tuple(sources), rows, np.zeros(len(rows), np.intp), [np.arange(len(rows))])
    _refuse_shared_hosts(sources, per_shard)
    tagged = sorted(
        (row[:4], shard, j) for shard, rows in enumerate(per_shard) for j, row in enumerate(rows)
    )
    owner = np.fromiter((shard for _, shard, _ in tagged), np.intp, len(tagged))
    at = [np.empty(len(rows), np.intp) for rows in per_shard]
    merged = []
    for i, (_, shard, j) in enumerate(tagged):
        at[shard][j] = i
        merged.append(per_shard[shard][j])
    return _Merged(tuple(sources), merged, owner, at)


def _refuse_shared_hosts(sources: Sequence[PresenceSource], per_shard: list[list[Any]]) -> None:
    """Shards own disjoint hosts; a host on two of them would be counted twice."""
    seen: dict[str, int] = {}
    for shard, rows in enumerate(per_shard):
        for host in {row[1] for row in rows}:
            other = seen.setdefault(host, shard)
            if other != shard:
                raise ConfigError(
                    f"host {host!r} has data on shards {sources[other].name} and "
                    f"{sources[shard].name}",
                    hint="each host must be routed to exactly one shard (docs/operations.md)",
                )


def _positions(
    index: dict[tuple[str, str, int], int], buckets: list[int], rows: list[Any]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Per candidate: its row of KeyStats by name and by path (-1: no path) and its
    bucket's position in the window, in one pass (100k candidates at 10k hosts)."""
    slot = {bucket: at for at, bucket in enumerate(buckets)}
    names, paths, places = [], [], []
    lookup = index.get
    for bucket, _host, name, path, _ in rows:
        names.append(index["name", name, bucket])
        paths.append(lookup(("path", path, bucket), -1))
        places.append(slot[bucket])
    return (
        np.array(names, dtype=np.intp),
        np.array(paths, dtype=np.intp),
        np.array(places, dtype=np.intp),
    )


def _fleet_contexts(
    sources: Sequence[PresenceSource], span: int, history: int, buckets: list[int], warmup: int
) -> dict[int, FleetContext]:
    """Per window bucket, over [bucket - history, bucket): host-buckets (sum of hosts
    per bucket), peak hosts in one bucket, buckets with data and the oldest of them;
    hosts per bucket summed over the shards first."""
    hosts: dict[int, int] = defaultdict(int)
    for source in sources:
        for bucket, count in source.fleet_buckets(span, buckets[0] - history, buckets[-1]):
            hosts[bucket] += count
    ordered = sorted(hosts)
    fleet = {}
    for bucket in buckets:
        inside = ordered[bisect_left(ordered, bucket - history) : bisect_left(ordered, bucket)]
        counts = [hosts[b] for b in inside]
        fleet[bucket] = FleetContext(
            bucket, sum(counts), max(counts, default=0), len(inside), inside[0] if inside else None
        )
    return fleet


def _rare(
    name_f: Array, name_h: Array, path_f: Array, path_h: Array, fleet_f: Array, fleet_n: Array
) -> npt.NDArray[np.bool_]:
    """Candidates whose path or name is rare in the fleet (R > 0). Only for those does
    this host's own use need counting (familiarity); for routine keys the score can only
    come from novelty, which needs just "has this host used it before"."""
    by_name = key_rarity(name_f, name_h, fleet_f, fleet_n)
    known = ~np.isnan(path_f)
    by_path = key_rarity(np.nan_to_num(path_f), np.nan_to_num(path_h), fleet_f, fleet_n)
    return np.asarray((by_name > 0) | (known & (by_path > 0)))


def _per_binary(rows: list[Any], value: Callable[[str, str], float]) -> Array:
    """`value(name, path)` for every candidate, computed once per distinct binary."""
    cache = {binary: value(*binary) for binary in {(r[2], r[3]) for r in rows}}
    return np.fromiter((cache[r[2], r[3]] for r in rows), float, len(rows))


def _per_path(rows: list[Any], value: Callable[[str], float]) -> Array:
    """`value(path)` for every candidate, computed once per distinct path."""
    cache = {path: value(path) for path in {r[3] for r in rows}}
    return np.fromiter((cache[r[3]] for r in rows), float, len(rows))


@dataclass(frozen=True)
class KeyStats:
    """Per (kind, key, bucket) of the candidates: `index` → row of `values`, whose columns
    are host-buckets, hosts (counted up to the routine level), first bucket, last bucket, established, recent hosts, hosts in the
    bucket itself, tenure, adopting (a), known (k), and hosts with open suspects
    included (column 10); the last row is all NaN (for a candidate without a path).
    Columns 0–3, 7 and 9 leave out what open suspects keep out of the baseline; the
    rollout columns (4–6, 8, 10) count every host. `held`: (host, name, path, bucket)
    → the open suspect that candidate continues."""

    index: dict[tuple[str, str, int], int]
    values: Array
    held: dict[tuple[str, str, str, int], Suspect] = field(default_factory=dict)


def _key_stats(
    sources: Sequence[PresenceSource],
    span: int,
    history: int,
    fleet: dict[int, FleetContext],
    rows: list[Any],
    suspects: Suspects = NO_SUSPECTS,
) -> KeyStats:
    """Over each bucket's baseline window: host-buckets, hosts (capped just past the
    routine share), first and last bucket seen, how established the key is and, for a
    young key, the hosts using it within the last day (spread). Sums, minima and maxima
    over the shards; capped host counts are summed and capped again, which is exact
    because the shards' hosts are disjoint. Then open suspects' use is taken out
    (`_Exclusion`)."""
    keys = sorted(
        {("name", r[2], r[0]) for r in rows} | {("path", r[3], r[0]) for r in rows if r[3]}
    )
    day = max(span, int(history * ESTABLISHED_SHARE))
    ranges = [(kind, key, bucket - history, bucket) for kind, key, bucket in keys]
    totals = [0] * len(keys)
    firsts: list[int | None] = [None] * len(keys)
    lasts: list[int | None] = [None] * len(keys)
    for source in sources:
        for row, (total, first, last) in enumerate(source.key_buckets(span, ranges)):
            totals[row] += total
            firsts[row] = least(firsts[row], first)
            lasts[row] = most(lasts[row], last)
    touching = {
        row: [s for s in suspects.on_key(kind, key) if s.since < bucket]
        for row, (kind, key, bucket) in enumerate(keys)
    }
    counted: list[CappedRange] = []  # (kind, key, low, high, cap) per asked count
    asks: list[tuple[int, int]] = []  # (key row, column) the count goes to
    waves: list[tuple[str, str, int]] = []
    wave_rows: list[int] = []
    for row, (kind, key, bucket) in enumerate(keys):
        if totals[row]:
            # past the routine level by one for each open suspect (taken out below)
            cap = routine_cap(fleet[bucket]) + len(touching[row])
            counted.append((kind, key, bucket - history, bucket, cap))
            asks.append((row, 1))
        first = firsts[row]
        if (bucket - first if first is not None else 0) < day:
            # a rollout is only ever a young key: hosts using it within a day
            counted.append((kind, key, bucket - day, bucket + span, rollout_cap(fleet[bucket])))
            asks.append((row, 5))
            waves.append((kind, key, bucket))
            wave_rows.append(row)
    values = np.full((len(keys) + 1, 11), np.nan)
    values[: len(keys), 1] = 0
    values[: len(keys), 5:7] = 1
    counts = _summed(sources, lambda s: s.hosts_in_window(span, counted), len(counted))
    for (row, column), count, (*_, cap) in zip(asks, counts, counted, strict=True):
        values[row, column] = min(count, cap)
    in_bucket = _summed(sources, lambda s: s.hosts_in_bucket(span, waves), len(waves))
    for row, count in zip(wave_rows, in_bucket, strict=True):
        values[row, 6] = count or 1
    values[: len(keys), 10] = values[: len(keys), 1]
    raw_firsts = list(firsts)
    exclusion = _Exclusion(sources, span, history, fleet, keys, touching)
    held = exclusion.apply(totals, values, firsts, lasts)
    for row, (_kind, _key, bucket) in enumerate(keys):
        values[row, 1] = min(values[row, 1], routine_cap(fleet[bucket]))
    for row, (_kind, _key, bucket) in enumerate(keys):
        first, last, context = firsts[row], lasts[row], fleet[bucket]
        age = bucket - first if first is not None else 0
        raw_first = raw_firsts[row]
        raw_age = bucket - raw_first if raw_first is not None else 0
        values[row, 0] = totals[row]
        values[row, 2] = np.nan if first is None else first
        values[row, 3] = np.nan if last is None else last
        values[row, 4] = min(1.0, raw_age / day)
        values[row, 7] = tenure(age, day, bucket, context.first_bucket)
        values[row, 8] = (
            adopting(raw_age, day, bucket, context.first_bucket) if raw_first is not None else 0
        )
        values[row, 9] = known(age, day, bucket, context.first_bucket) if first is not None else 0
    return KeyStats({key: row for row, key in enumerate(keys)}, values, held)


class _Exclusion:
    """Takes open suspects' use out of the key numbers (baseline/detect/suspects.py):
    each suspect's buckets from its `since` on leave the host-buckets, its host leaves
    the hosts unless it used the key before, and first / last seen are looked up again
    without them. A suspect that has settled at a bucket (`settles`) is put back."""

    def __init__(
        self,
        sources: Sequence[PresenceSource],
        span: int,
        history: int,
        fleet: dict[int, FleetContext],
        keys: list[tuple[str, str, int]],
        touching: dict[int, list[Suspect]],
    ) -> None:
        self.sources, self.span, self.history, self.fleet = sources, span, history, fleet
        self.keys, self.touching = keys, {row: ss for row, ss in touching.items() if ss}
        pairs = sorted(
            {(s, keys[row][2]) for row, ss in self.touching.items() for s in ss},
            key=lambda pair: (pair[1], pair[0].host, pair[0].name, pair[0].path),
        )
        self.usage = self._usage(pairs)
        self.peers = self._peers(pairs)

    def _peers(self, pairs: list[tuple[Suspect, int]]) -> dict[tuple[Suspect, int], PeerUse]:
        """For package-managed suspects not yet settled by their own occasions: a peer
        of the host that uses the same path routinely (baseline/detect/peers.py)."""
        buckets: dict[Suspect, list[int]] = {}
        for s, bucket in pairs:
            if (
                s.path
                and classify(s.path) is Location.PACKAGE
                and self.usage[s, bucket].occasions < SETTLING_OCCASIONS[Location.PACKAGE]
            ):
                buckets.setdefault(s, []).append(bucket)
        suspects = list(buckets)
        if not suspects:
            return {}
        asks = [[s.host, s.path, buckets[s]] for s in suspects]
        answers = asked(self.sources, self.span, self.history, asks)
        weights = self._path_weights(answers, [b for s in suspects for b in buckets[s]])
        rows = {key: row for row, key in enumerate(self.keys)}
        found: dict[tuple[Suspect, int], PeerUse] = {}
        for s, answer in zip(suspects, answers, strict=True):
            for at, bucket in enumerate(buckets[s]):
                row = rows.get(("path", s.path, bucket))
                signalled = (
                    {o.host for o in self.touching.get(row, [])} if row is not None else set()
                )
                peer = routine_peer(answer, s.host, s.path, at, signalled | {s.host}, weights)
                if peer is not None:
                    found[s, bucket] = peer
        return found

    def _path_weights(self, answers: list[list[Any]], buckets: list[int]) -> dict[str, float]:
        """The weight of every path in the answers' profiles (peers.path_weights): the
        fleet's hosts using it over the windows, counted up to the common level."""
        paths = sorted({p for answer in answers for _, profile in answer[0] for p in profile})
        fleet_hosts = max(float(self.fleet[b].hosts) for b in buckets)
        low, high = min(buckets) - self.history, max(buckets)
        return weights_over(self.sources, self.span, low, high, fleet_hosts, paths)

    def _usage(self, pairs: list[tuple[Suspect, int]]) -> dict[tuple[Suspect, int], Usage]:
        """One ask per suspect for all its buckets, merged over the shards."""
        buckets: dict[Suspect, list[int]] = {}
        for s, bucket in pairs:
            buckets.setdefault(s, []).append(bucket)
        suspects = list(buckets)
        asks = [[s.host, s.name, s.path, s.since, buckets[s]] for s in suspects]
        merged = {pair: EMPTY_USAGE for pair in pairs}
        if asks:
            for source in self.sources:
                answers = source.suspect_usage(self.span, self.history, asks)
                for s, rows in zip(suspects, answers, strict=True):
                    for bucket, row in zip(buckets[s], rows, strict=True):
                        merged[s, bucket] = merged[s, bucket].merged(Usage.from_row(row))
        return merged

    def apply(
        self, totals: list[int], values: Array, firsts: list[Any], lasts: list[Any]
    ) -> dict[tuple[str, str, str, int], Suspect]:
        """Adjust columns 0–3 in place (host-buckets and hosts in `totals` / `values`);
        return the open suspects each (host, name, path, bucket) continues."""
        if not self.touching:
            return {}
        kept_out = self._kept_out(totals, values)
        settled = self._settled(totals, values, firsts)
        held: dict[tuple[str, str, str, int], Suspect] = {}
        for row, suspects in self.touching.items():
            bucket = self.keys[row][2]
            for s in suspects:
                if (s, bucket) in settled:
                    self._put_back(row, s, totals, values)
                else:
                    held[s.host, s.name, s.path, bucket] = s.as_of(bucket)
        still = {
            row: unsettled
            for row, suspects in kept_out.items()
            if (unsettled := [s for s in suspects if (s, self.keys[row][2]) not in settled])
        }
        for row, (first, last) in self._bounds(still, firsts, lasts).items():
            firsts[row], lasts[row] = first, last
        return held

    def _kept_out(self, totals: list[int], values: Array) -> dict[int, list[Suspect]]:
        """Take every touching suspect out; the rows whose bounds need a new look."""
        kept_out: dict[int, list[Suspect]] = {}
        for row, suspects in self.touching.items():
            kind, _key, bucket = self.keys[row]
            for s in suspects:
                use = self.usage[s, bucket]
                buckets, clean = _own(use, kind)
                if buckets:
                    totals[row] -= buckets
                    if not clean:
                        values[row, 1] -= 1
                    kept_out.setdefault(row, []).append(s)
        return kept_out

    def _put_back(self, row: int, s: Suspect, totals: list[int], values: Array) -> None:
        kind, _key, bucket = self.keys[row]
        buckets, clean = _own(self.usage[s, bucket], kind)
        if buckets:
            totals[row] += buckets
            if not clean:
                values[row, 1] += 1

    def _bounds(
        self, kept_out: dict[int, list[Suspect]], firsts: list[Any], lasts: list[Any]
    ) -> dict[int, tuple[Any, Any]]:
        """First and last bucket of each key without its suspects' kept-out use. A bound
        stands when another host used the key in that bucket too; only keys whose
        bound was a suspect's alone (rare ones) are looked up again."""
        probes: list[tuple[int, int, int]] = []  # (row, bucket, suspects present then)
        for row, suspects in kept_out.items():
            kind, _key, bucket = self.keys[row]
            ends = [self._own_bounds(s, bucket, kind) for s in suspects]
            raws = (firsts[row], lasts[row]) if kind == "path" else (firsts[row],)
            for at, raw in enumerate(raws):
                present = sum(1 for end in ends if end[at] == raw)
                if present:
                    probes.append((row, raw, present))
        asked = [(self.keys[row][0], self.keys[row][1], bucket) for row, bucket, _ in probes]
        hosts = _summed(self.sources, lambda s: s.hosts_in_bucket(self.span, asked), len(asked))
        again = sorted({row for (row, _, n), h in zip(probes, hosts, strict=True) if h <= n})
        asks = []
        for row in again:
            kind, key, bucket = self.keys[row]
            left_out = [[s.host, s.path, s.since] for s in kept_out[row]]
            asks.append([kind, key, bucket - self.history, bucket, left_out])
        found: list[tuple[Any, Any]] = [(None, None)] * len(asks)
        if asks:
            for source in self.sources:
                answers = source.clean_bounds(self.span, asks)
                found = [
                    (least(f, a), most(last, b))
                    for (f, last), (a, b) in zip(found, answers, strict=True)
                ]
        bounds = {row: (firsts[row], lasts[row]) for row in kept_out}
        for row, (first, last) in zip(again, found, strict=True):
            # a name's last bucket is never shown, and not looked up again
            bounds[row] = (first, last if self.keys[row][0] == "path" else lasts[row])
        return bounds

    def _own_bounds(self, s: Suspect, bucket: int, kind: str) -> tuple[Any, Any]:
        use = self.usage[s, bucket]
        if kind == "path":
            return use.path_first, use.path_last
        return use.name_first, use.name_last

    def _settled(
        self, totals: list[int], values: Array, firsts: list[Any]
    ) -> set[tuple[Suspect, int]]:
        """(suspect, bucket) pairs that settled without a person (suspects.settles): a
        package path the fleet adopted after the signal — routine without any suspect's
        use, and first used in the window after it (before the signal, only someone
        without an open signal could have used it) — or enough occasions."""
        index = {key: row for row, key in enumerate(self.keys)}
        out = set()
        for (s, bucket), use in self.usage.items():
            row = index.get(("path", s.path, bucket)) if s.path else None
            adopted = False
            if row is not None:
                context = self.fleet[bucket]
                rarity = key_rarity(
                    np.array([float(totals[row])]),
                    np.array([float(values[row, 1])]),
                    np.array([float(context.host_buckets)]),
                    np.array([float(context.hosts)]),
                )[0]
                first = firsts[row]
                adopted = rarity <= 0 and first is not None and first >= s.since
            if settles(s, use, adopted, peer=(s, bucket) in self.peers):
                out.add((s, bucket))
        return out


def _own(use: Usage, kind: str) -> tuple[int, bool]:
    """A suspect's kept-out buckets of a key, and whether its host used it before."""
    if kind == "path":
        return use.path_buckets, use.path_clean
    return use.name_buckets, use.name_clean


def _summed(
    sources: Sequence[PresenceSource], ask: Callable[[PresenceSource], list[int]], n: int
) -> list[int]:
    """One batch answer per shard, summed element-wise."""
    total = [0] * n
    if n:
        for source in sources:
            total = [a + b for a, b in zip(total, ask(source), strict=True)]
    return total


def rollout_hosts(
    sources: Sequence[PresenceSource], span: int, history: int, path: str, bucket: int
) -> int:
    """Exactly how many hosts used `path` within the day up to `bucket` (a rollout's
    signal names them; everywhere else the count stops at the rollout level)."""
    day = max(span, int(history * ESTABLISHED_SHARE))
    ask = [("path", path, bucket - day, bucket + span, 1 << 30)]
    return _summed(sources, lambda s: s.hosts_in_window(span, ask), 1)[0]


def rollout_cap(context: FleetContext) -> int:
    """Hosts within a day beyond which a young package-managed path is fully a rollout."""
    return math.ceil(max(ROLLOUT_SHARE * context.hosts, MIN_ROLLOUT_HOSTS))


def routine_cap(context: FleetContext) -> int:
    """Hosts beyond which a key is routine (counting further changes no score)."""
    return math.ceil(max(ROUTINE_SHARE * context.hosts, MIN_ROUTINE_HOSTS))


def _pair_stats(
    merged: _Merged, span: int, history: int, rare: npt.NDArray[np.bool_], until: list[int]
) -> tuple[Array, Array]:
    """Per candidate, asked of its own shard: this host's buckets with this binary in
    its window (before `until`: an open suspect's first signal) and the host's active
    buckets (LocalSource.pair_stats)."""
    n = len(merged.rows)
    host_path, active = np.ones(n), np.zeros(n)
    for source, at in zip(merged.sources, merged.at, strict=True):
        if len(at):
            rows = [merged.rows[i] for i in at]
            ends = [until[i] for i in at]
            used, buckets = source.pair_stats(span, history, rows, rare[at].tolist(), ends)
            host_path[at], active[at] = used, buckets
    return host_path, active


def _name_here(merged: _Merged, span: int, history: int, features: Features) -> Array:
    """1 where the host used the candidate's name from another path in its window, asked
    only where it can make an upgrade: a package path in its first week already on
    another host, whose name is not routine in the fleet."""
    rarity_name = key_rarity(
        features.name_host_buckets,
        features.name_hosts,
        features.fleet_host_buckets,
        features.fleet_hosts,
    )
    elsewhere = np.nan_to_num(features.path_elsewhere) if features.path_elsewhere is not None else 0
    worth = (
        (features.package_managed > 0)
        & (features.adopting > 0)
        & (np.asarray(elsewhere) >= 1)
        & (rarity_name > 0)
    )
    here = np.zeros(len(merged.rows))
    for source, at in zip(merged.sources, merged.at, strict=True):
        asked = [int(i) for i in at if worth[i]]
        if asked:
            rows = [merged.rows[i] for i in asked]
            here[asked] = source.name_elsewhere(span, history, rows)
    return here


def _fresh_destinations(
    merged: _Merged, span: int, history: int, young: npt.NDArray[np.bool_]
) -> Array:
    """d per candidate: 1 for a shell whose first connection in the bucket goes to an
    address no shell of its name used in its baseline window (a reverse shell's C2, not a
    health check's database), else 0. Looked up only for shells on hosts not yet mature
    (`young`): on a mature host max(m, d) is 1 whatever d is, so it stays 0 there. The
    remote comes from the candidate's shard; where shells went is merged over all shards
    (first bucket: the least, last: the most) before it is compared with the window."""
    rows = merged.rows
    fresh = np.zeros(len(rows))
    remotes: dict[int, str] = {}
    for source, at in zip(merged.sources, merged.at, strict=True):
        shells = [int(i) for i in at if young[i] and is_plain_shell(rows[i][2])]
        if not shells:
            continue
        answers = source.first_remotes([rows[i][4] for i in shells])
        for i, (stored, remote) in zip(shells, answers, strict=True):
            if not stored or remote in UNSET_REMOTES:
                continue  # pruned, or no address: 0
            if remote is None:
                fresh[i] = 1  # a NULL address never matches a remembered one
            else:
                remotes[i] = remote
    pairs = sorted({(rows[i][2], remote) for i, remote in remotes.items()})
    if not pairs:
        return fresh
    seen: dict[tuple[str, str], tuple[Any, Any]] = dict.fromkeys(pairs, (None, None))
    for source in merged.sources:
        for pair, (first, last) in zip(pairs, source.shell_destinations(span, pairs), strict=True):
            old_first, old_last = seen[pair]
            seen[pair] = (least(old_first, first), most(old_last, last))
    for i, remote in remotes.items():
        bucket = rows[i][0]
        first, last = seen[rows[i][2], remote]
        used = first is not None and first < bucket and last >= bucket - history
        fresh[i] = 0.0 if used else 1.0
    return fresh
