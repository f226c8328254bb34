"""The rule's score for one socket: a pure-Python scalar port of the numpy formula.

docs/scoring.md documents the formula; baseline/detect/scoring.py computes it over
arrays on the central service. Hosts have no numpy, so this is the same arithmetic on
floats (tests/host/test_extension_scoring.py checks they agree on random inputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ROUTINE_SHARE = 0.05
MIN_ROUTINE_HOSTS = 3.0
NOVELTY_WEIGHT = 0.6
HABIT_WEIGHT = 0.5
HABIT_BUCKETS = 4.0
RARITY_WEIGHT = 0.8
LOCATION_WEIGHT = 0.2
ROLLOUT_SHARE = 0.1
MIN_ROLLOUT_HOSTS = 5.0
HOST_PATH_CAP = 12
ESTABLISHED_SHARE = 1 / 14
MATURE_SHARE = 3 / 14
ADOPTION_SHARE = 7 / 14  # a package path is in its first week (an upgrade) this long


@dataclass(frozen=True, slots=True)
class Inputs:
    """The formula's inputs for one candidate (docs/scoring.md, "Inputs")."""

    fleet_host_buckets: float  # F
    fleet_hosts: float  # N
    path_host_buckets: float | None  # f for the path key (None: the socket has no path)
    path_hosts: float | None  # h for the path key
    name_host_buckets: float  # f for the name key
    name_hosts: float  # h for the name key
    host_path_buckets: float  # hk
    host_maturity: float  # m
    established: float  # e
    known: float  # k (see `known`)
    recent_hosts: float  # c
    wave_hosts: float = 1.0  # w (a snapshot of the window before cannot know it: 1)
    package_managed: float = 0.0  # p (extension.locations.package_managed)
    suspicion: float = 0.0  # s (extension.locations.suspicion)
    tenure: float = 1.0  # t (see `tenure`)
    fresh_destination: float = 0.0  # d (the rule's; a host cannot know fleet destinations)
    adopting: float = 0.0  # a (see `adopting`)
    baseline_cover: float = 1.0  # y (see `baseline_cover`)


@dataclass(frozen=True, slots=True)
class Score:
    score: float
    rarity_path: float
    rarity_name: float
    rarity: float
    rollout: float
    weight: float
    familiarity: float
    novelty: float
    unrolled: float


def _clip(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def _ratio(top: float, bottom: float) -> float:
    """top / bottom with numpy's float semantics for a zero divisor."""
    if bottom == 0:
        return math.inf if top > 0 else math.nan
    return top / bottom


def mature_buckets(history: float, span: int) -> int:
    """Active buckets that make a host mature: 3 days (MATURE_SHARE of the history)."""
    return max(1, int(history * MATURE_SHARE) // span)


def tenure(age: float, day: float, at: float, baseline_since: float | None) -> float:
    """How long a key has been seen, as a share of a day (1 once it has been seen that
    long). While the baseline itself is younger than a day every key is young, so youth
    is no evidence: 1."""
    baseline = at - baseline_since if baseline_since is not None else 0
    return 1.0 if baseline < day or age >= day else age / day


def known(age: float, day: float, at: float, baseline_since: float | None) -> float:
    """k: how known a key seen before is, for host novelty: like e, but 1 while the
    baseline itself is younger than a day (every key is young then)."""
    baseline = at - baseline_since if baseline_since is not None else 0
    return 1.0 if baseline < day else min(1.0, age / day)


def baseline_cover(day: float, at: float, baseline_since: float | None) -> float:
    """y: how much of a day the fleet's baseline covers, in [0, 1]. On a deployment's
    first day a package-managed program not seen yet has most likely not had its daily
    run yet, so its fleet rarity counts only this much."""
    if baseline_since is None:
        return 0.0
    return min(1.0, max(0.0, (at - baseline_since) / day))


def adopting(age: float, day: float, at: float, baseline_since: float | None) -> float:
    """1 while a key is in its first week (ADOPTION_SHARE of the history, `day` being
    1/14 of it) and appeared after the baseline's first day (a key there since the start
    is not new), else 0."""
    if baseline_since is None:
        return 0.0
    first = at - age
    return 1.0 if first >= baseline_since + day and age < day * 14 * ADOPTION_SHARE else 0.0


def key_rarity(host_buckets: float, hosts: float, fleet_f: float, fleet_n: float) -> float:
    """1 for a key never seen, 0 for a routine one (≥ 5 % of host-buckets or of hosts)."""
    if host_buckets <= 0:
        return 1.0
    routine_hosts = max(ROUTINE_SHARE * fleet_n, MIN_ROUTINE_HOSTS)
    by_buckets = (
        _ratio(math.log1p(2 * host_buckets), math.log1p(2 * ROUTINE_SHARE * fleet_f))
        if fleet_f > 0
        else 0.0
    )
    by_hosts = _ratio(math.log1p(2 * hosts), math.log1p(2 * routine_hosts)) if fleet_n > 0 else 0.0
    return min(1 - _clip(by_buckets, 0, 1), 1 - _clip(by_hosts, 0, 1))


def score(x: Inputs) -> Score:
    """Same result as `baseline.detect.scoring.score` for one candidate."""
    rarity_name = key_rarity(x.name_host_buckets, x.name_hosts, x.fleet_host_buckets, x.fleet_hosts)
    rarity_path = 0.0
    if x.path_host_buckets is not None and not math.isnan(x.path_host_buckets):
        rarity_path = key_rarity(
            x.path_host_buckets,
            x.path_hosts or 0.0,
            x.fleet_host_buckets,
            x.fleet_hosts,
        )
    if x.path_host_buckets is not None and not math.isnan(x.path_host_buckets):
        tenure = _clip(x.tenure, 0, 1)
        rarity_path = 1 - tenure * (1 - rarity_path)  # a young path: not yet a baseline
    rarity = max(rarity_path, rarity_name)
    rarity *= 1 - _clip(x.package_managed, 0, 1) * (1 - _clip(x.baseline_cover, 0, 1))
    rollout = max(rollout_share(x), upgrade_share(x, rarity_name))
    host_buckets = max(x.host_path_buckets, 0.0)
    maturity = max(_clip(x.host_maturity, 0, 1), _clip(x.fresh_destination, 0, 1))
    novelty = math.exp(-2 * host_buckets) * maturity * _clip(x.known, 0, 1)
    familiarity = 1 - math.exp(-host_buckets / HABIT_BUCKETS)
    weight = RARITY_WEIGHT + LOCATION_WEIGHT * _clip(x.suspicion, 0, 1)
    habit = rarity * (1 - HABIT_WEIGHT * familiarity) * weight
    novel = 1 - NOVELTY_WEIGHT * novelty
    unrolled = 100 * (1 - (1 - habit) * novel)
    total = unrolled * (1 - rollout)
    return Score(
        score=_round1(total),
        rarity_path=rarity_path,
        rarity_name=rarity_name,
        rarity=rarity,
        rollout=rollout,
        weight=weight,
        familiarity=familiarity,
        novelty=novelty,
        unrolled=_round1(unrolled),
    )


def _round1(value: float) -> float:
    """Clipped to [0, 100] and rounded as numpy's round(…, 1)."""
    return round(_clip(value, 0, 100) * 10) / 10


def rollout_share(x: Inputs) -> float:
    """How much a rollout explains (see baseline.detect.scoring.rollout_share)."""
    young = 1 - _clip(x.established, 0, 1)
    at_once = _clip(x.wave_hosts - 1, 0, 1)
    hosts = max(ROLLOUT_SHARE * x.fleet_hosts, MIN_ROLLOUT_HOSTS)
    share = _clip((x.recent_hosts - 1) / (hosts - 1), 0, 1)
    return _clip(x.package_managed, 0, 1) * young * max(at_once, share)


def upgrade_share(x: Inputs, rarity_name: float) -> float:
    """1 for a known program at a package path in its first week that another host
    already used (see baseline.detect.scoring.upgrade_share)."""
    seen = x.path_hosts is not None and not math.isnan(x.path_hosts) and x.path_hosts >= 1
    if not seen or rarity_name > 0:
        return 0.0
    return _clip(x.adopting, 0, 1) * _clip(x.package_managed, 0, 1)
