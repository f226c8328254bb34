"""Score one live socket's binary against the snapshot: the rule's inputs from a lookup.

For a (name, path) the snapshot gives the path's and the name's fleet counts (summed
over the entries that share them), this host's buckets with the path, how established
the path is at the snapshot's data time, and the host's maturity (`host_activity`).
The live socket is scored as if it were in the bucket right after the snapshot window,
which is what the rule would do at the snapshot's data time.
"""

from __future__ import annotations

from dataclasses import dataclass

from rarenet.extension.locations import may_roll_out, suspicion
from rarenet.extension.scoring import (
    ESTABLISHED_SHARE,
    HOST_PATH_CAP,
    Inputs,
    Score,
    adopting,
    baseline_cover,
    key_rarity,
    known,
    score,
    tenure,
)
from rarenet.extension.snapshot import Entry, Snapshot


@dataclass(frozen=True, slots=True)
class Assessment:
    score: Score
    reason: str
    hosts: int  # fleet hosts with the key that decided (path, else name)
    host_buckets: int
    on_host: int | None  # this host's buckets with the path (None: snapshot has no host)
    first_seen: int | None
    last_seen: int | None


def assess(snapshot: Snapshot, name: str, path: str) -> Assessment:
    """The rule's score for `name` at `path` and a one-line reason in numbers."""
    fleet = snapshot.fleet
    by_path = snapshot.path_entries(path) if path else ()
    by_name = snapshot.name_entries(name)
    key_entries = by_path if path else by_name
    f_key, h_key = _sums(key_entries)
    on_host = _on_host(snapshot, key_entries)
    first = min((e.first_seen for e in key_entries), default=None)
    last = max((e.last_seen for e in key_entries), default=None)
    span = snapshot.bucket_span
    day = max(span, int(snapshot.history * ESTABLISHED_SHARE))
    age = snapshot.data_time - first if first is not None else 0
    recent = 1.0
    if age < day:  # a young key: hosts that used it are all within the last day
        recent = h_key + (0 if on_host else 1)
    f_name, h_name = _sums(by_name)
    fleet_f, fleet_n = float(fleet.host_buckets), float(fleet.hosts)
    rare = key_rarity(f_name, h_name, fleet_f, fleet_n) > 0 or (
        bool(path) and key_rarity(f_key, h_key, fleet_f, fleet_n) > 0
    )
    # as the rule: this host's use counts up to 12 buckets for a rare key, and only as
    # "used before or not" (0 or 1) for a routine one
    host_buckets = min(on_host or 0, HOST_PATH_CAP if rare else 1)
    inputs = Inputs(
        fleet_host_buckets=float(fleet.host_buckets),
        fleet_hosts=float(fleet.hosts),
        path_host_buckets=float(f_key) if path else None,
        path_hosts=float(h_key) if path else None,
        name_host_buckets=float(f_name),
        name_hosts=float(h_name),
        host_path_buckets=float(host_buckets),
        host_maturity=_maturity(snapshot),
        established=min(1.0, age / day),
        known=known(age, day, snapshot.data_time, fleet.since) if first is not None else 0.0,
        tenure=tenure(age, day, snapshot.data_time, fleet.since) if first is not None else 1.0,
        recent_hosts=float(recent),
        package_managed=float(may_roll_out(name, path)),
        suspicion=suspicion(path),
        adopting=(
            adopting(age, day, snapshot.data_time, fleet.since)
            if path and first is not None
            else 0.0
        ),
        baseline_cover=baseline_cover(day, snapshot.data_time, fleet.since),
    )
    result = score(inputs)
    reason = _reason(snapshot, name, path, inputs, result, on_host)
    return Assessment(result, reason, h_key, f_key, on_host, first, last)


def _sums(entries: tuple[Entry, ...]) -> tuple[int, int]:
    """Host-buckets and hosts of a key: exact for a key with one entry (the usual case);
    an upper bound when one path runs under several names in the same host-bucket."""
    if len(entries) == 1:
        return entries[0].host_buckets, entries[0].hosts
    return sum(e.host_buckets for e in entries), sum(e.hosts for e in entries)


def _on_host(snapshot: Snapshot, entries: tuple[Entry, ...]) -> int | None:
    if snapshot.host is None and all(e.on_host is None for e in entries):
        return None
    return sum(e.on_host or 0 for e in entries)


def _maturity(snapshot: Snapshot) -> float:
    if snapshot.host_active_buckets is None or not snapshot.mature_buckets:
        return 0.0  # unknown: a host without history of its own (novelty off)
    return min(1.0, snapshot.host_active_buckets / snapshot.mature_buckets)


def _reason(
    snapshot: Snapshot, name: str, path: str, x: Inputs, s: Score, on_host: int | None
) -> str:
    fleet = snapshot.fleet
    window = _age(snapshot.data_time - fleet.since) if fleet.since else "the window"
    key = path or name
    parts: list[str] = []
    if not fleet.mature:
        parts.append(f"learning ({fleet.buckets}/{snapshot.warmup_buckets} buckets, no signal yet)")
    if path and x.path_host_buckets == 0:
        parts.append(
            f"{path} never seen in {fleet.host_buckets:,} fleet host-buckets over {window}"
        )
        if x.name_host_buckets:
            parts.append(f"name {name} is known on {int(x.name_hosts)} hosts (masquerade?)")
    elif not path and x.name_host_buckets == 0:
        parts.append(
            f"{name} never seen in {fleet.host_buckets:,} fleet host-buckets over {window}"
        )
    else:
        f = int(x.path_host_buckets if path and x.path_host_buckets else x.name_host_buckets)
        h = int(x.path_hosts if path and x.path_hosts else x.name_hosts)
        parts.append(
            f"{key} seen on {h} hosts in {f:,} of {fleet.host_buckets:,} fleet host-buckets "
            f"(rarity {s.rarity:.2f})"
        )
        if s.rollout > 0:
            parts.append(f"new path on {int(x.recent_hosts)} hosts within a day: rollout?")
        if s.novelty >= 0.5:
            parts.append("common in the fleet but new on this host")
    if on_host is None:
        parts.append("snapshot has no per-host counts (export it with --host)")
    elif on_host:
        parts.append(f"this host used it in {on_host} buckets")
    return "; ".join(parts) + f" → score {s.score:g}"


def _age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{int(seconds // 60)}m"
