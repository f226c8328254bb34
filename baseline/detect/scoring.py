"""Rarity scoring: pure numpy functions (arrays in, arrays out, no I/O).

Documented with worked examples in docs/scoring.md. For a candidate — a host using a
binary (name, path) in bucket b — every input counts presence in the baseline window
[b - history, b), never raw connections and never the scored bucket itself:

  F   fleet host-buckets (hosts active per bucket, summed)     N   fleet size (peak hosts in a bucket)
  f   host-buckets where the key was present                   h   distinct hosts that used the key
  hk  this host's buckets with this path                       m   this host's maturity (buckets / warm-up)
  e   how established the path is in the fleet (age since first seen / (history/14), at most 1)
  k   how known the binary is, for host novelty: e, but 1 for any binary seen before while
      the baseline itself is younger than history/14 (every key is young then)
  c   distinct hosts using the path within the last history/14, this bucket included
  w   distinct hosts using the path in the scored bucket itself (young paths only)
  p   1 when the path is package-managed and the process no shell (extension/locations.py
      may_roll_out), else 0
  s   the suspicion of the path's location: volatile/hidden 1, home 0.4, local 0.25, package 0
  d   1 when a shell holds a socket to an address no shell used in the fleet's window, else 0
  a   1 while a package-managed path is in its first week (appeared after the baseline's
      first day), else 0
  y   how much of a day the fleet's baseline covers: (b - baseline since) / (history/14),
      in [0, 1] (a deployment's first day: daily jobs have not all run yet)
  v   1 when a familiar destination vouches for a program a person or a package put on the
      host (baseline/detect/destinations.py `may_vouch`): its first connection goes to an
      address and port at least 2 other hosts used in the window, else 0
  q   1 when a peer of the host without an open signal for the path uses it routinely and
      the binary is one a person or a package put there (baseline/detect/peer_evidence.py)
  r   1 when this use recurs on a schedule (daily, weekly, monthly, quarterly: the long
      memory, baseline/detect/schedule.py) and a schedule may explain the binary, else 0

  rarity(key)  = min(1 - ln(1+2f)/ln(1+2·0.05·F),  1 - ln(1+2h)/ln(1+2·max(0.05·N, 3))), in [0, 1]
  t            the path's tenure: age since first seen / (history/14), at most 1; 1 while the
               baseline itself is younger than history/14 (every key is young then)
  Rp           = 1 - t·(1 - rarity(path))                  a young path is not yet a baseline
  R            = max(Rp, rarity(name)) · (1 - p·(1 - y))   the rarer key decides (masquerade);
                 a package program unseen on the baseline's first day counts y of it
  wave         = p · (1 - e) · max(clip(w - 1, 0, 1), clip((c-1)/(max(0.1·N, 5) - 1), 0, 1))
                 a young package-managed path on several hosts at once, or on 10 % of the fleet
  upgrade      = p · a · [rarity(name) = 0 or n] · [h ≥ 1]   (n: this host used the name
               from another path in its window)
                 a known program at a new package path, already on another host
  rollout      = max(wave, upgrade)
  familiarity  = 1 - exp(-hk/4)                              this host's own habit (hk capped at 12)
  R'           = R · (1 - 0.5·familiarity)
  weight       = 0.8 + 0.2·s                                 where it runs from tops the scale
  novelty      = exp(-2·hk) · max(m, d) · k                 new on a mature host, known in the fleet
  score        = 100 · (1 - (1 - R'·weight) · (1 - 0.6 · novelty)) · (1 - rollout) · (1 - 0.75·r)
                 · (1 - 0.5·v) · (1 - 0.5·q)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

ROUTINE_SHARE = 0.05  # a key on ≥ 5 % of host-buckets (or hosts) is routine: rarity 0
MIN_ROUTINE_HOSTS = 3.0  # …and, in small fleets, on at least 3 hosts
NOVELTY_WEIGHT = 0.6  # a known binary new on a mature host alone scores 60
HABIT_WEIGHT = 0.5  # a rare binary this host itself uses routinely counts half
HABIT_BUCKETS = 4.0  # familiarity reaches 63 % after 4 buckets of use on this host
RARITY_WEIGHT = 0.8  # fleet rarity alone scores at most 80 …
LOCATION_WEIGHT = 0.2  # … and a volatile or hidden location adds the last 20
ROLLOUT_SHARE = 0.1  # a young package-managed path on 10 % of the fleet within a day …
MIN_ROLLOUT_HOSTS = 5.0  # … and on at least 5 hosts is a rollout (two at once already are)
SCHEDULE_WEIGHT = 0.75  # a use on its schedule keeps a quarter of its score: routine
FAMILIAR_WEIGHT = 0.5  # a fresh install talking where the fleet talks keeps half
PEER_WEIGHT = 0.5  # a program the host's peers use routinely keeps half


@dataclass(frozen=True)
class Features:
    """Inputs for n candidates, one float array per quantity (see the module docstring)."""

    fleet_host_buckets: Array  # F
    fleet_hosts: Array  # N
    path_host_buckets: Array  # f for the path key (nan when the path is unknown)
    path_hosts: Array  # h for the path key (nan when unknown)
    name_host_buckets: Array  # f for the name key
    name_hosts: Array  # h for the name key
    host_path_buckets: Array  # hk
    host_maturity: Array  # m in [0, 1]
    established: Array  # e in [0, 1]
    known: Array  # k in [0, 1]
    tenure: Array  # t in [0, 1] (of the path; of the name when there is none)
    recent_hosts: Array  # c, this host included
    wave_hosts: Array  # w, this host included
    package_managed: Array  # p, 1.0 or 0.0
    suspicion: Array  # s in [0, 1]
    fresh_destination: Array  # d, 1.0 or 0.0
    adopting: Array  # a, 1.0 or 0.0
    # hosts that used the path in the window, open suspects included (an upgrade is
    # "already on another host" even when that host's signal is still open); None: h
    path_elsewhere: Array | None = None
    # 1 where this host used the binary's name from another path in its window (its own
    # program, now at a new path); None: not known (the name must be routine in the fleet)
    name_here: Array | None = None
    # r: 1 where the use recurs on a schedule a schedule may explain; None: none does
    recurring: Array | None = None
    # y: how much of a day the fleet's baseline covers; None: a whole day (y = 1)
    baseline_cover: Array | None = None
    # v: 1 where a familiar destination vouches for the binary; None: nowhere
    familiar_destination: Array | None = None
    # q: 1 where a peer's routine speaks for the binary; None: nowhere
    peer_routine: Array | None = None
    # u: 1 where a login account (a person, not root or a service) started the process
    # of the candidate's first connection; None: nowhere known
    person: Array | None = None


@dataclass(frozen=True)
class Scores:
    """Scores in [0, 100] and the parts that explain them."""

    score: Array
    rarity_path: Array
    rarity_name: Array
    rarity: Array  # R
    rollout: Array  # how much of the rarity a rollout explains, in [0, 1]
    upgrade: Array  # 1 where the rollout is an upgrade reaching one more host
    app: Array  # 1 where it is an app people install reaching one more host
    weight: Array  # the location's weight on the fleet part
    familiarity: Array
    novelty: Array
    unrolled: Array  # the score had no rollout discounted it (what a rollout signal shows)
    schedule: Array  # how much of the score a schedule explains, in [0, 1]
    familiar: Array  # how much of the score a familiar destination takes, in [0, 1]
    peers: Array  # how much of the score a peer's routine takes, in [0, 1]
    evidenced: Array  # the score with every discount but the rollout's


def indicator(size: int, indices: Iterable[int]) -> Array:
    """1.0 at `indices`, 0.0 elsewhere: a 0/1 feature (r, v, q) for `size` candidates."""
    flags = np.zeros(size)
    flags[list(indices)] = 1.0
    return flags


def routine_hosts(fleet_hosts: Array) -> Array:
    """How many hosts make a key routine: 5 % of the fleet, at least 3."""
    return np.maximum(ROUTINE_SHARE * fleet_hosts, MIN_ROUTINE_HOSTS)


def key_rarity(
    host_buckets: Array, hosts: Array, fleet_host_buckets: Array, fleet_hosts: Array
) -> Array:
    """1 for a key never seen, 0 for a routine one (≥ 5 % of host-buckets or of hosts)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        by_buckets = np.log1p(2 * host_buckets) / np.log1p(2 * ROUTINE_SHARE * fleet_host_buckets)
        by_hosts = np.log1p(2 * hosts) / np.log1p(2 * routine_hosts(fleet_hosts))
    by_buckets = np.where(fleet_host_buckets > 0, by_buckets, 0.0)
    by_hosts = np.where(fleet_hosts > 0, by_hosts, 0.0)
    rarity = np.minimum(1 - np.clip(by_buckets, 0, 1), 1 - np.clip(by_hosts, 0, 1))
    return np.where(host_buckets > 0, rarity, 1.0)


def score(features: Features) -> Scores:
    """Score every candidate; deterministic and monotone (rarer never scores lower)."""
    fleet_f, fleet_n = features.fleet_host_buckets, features.fleet_hosts
    rarity_name = key_rarity(features.name_host_buckets, features.name_hosts, fleet_f, fleet_n)
    known_path = ~np.isnan(features.path_host_buckets)
    rarity_path = np.where(
        known_path,
        key_rarity(
            np.nan_to_num(features.path_host_buckets),
            np.nan_to_num(features.path_hosts),
            fleet_f,
            fleet_n,
        ),
        0.0,
    )
    rarity_path = np.where(
        known_path, young_rarity(rarity_path, np.clip(features.tenure, 0, 1)), 0.0
    )
    rarity = np.maximum(rarity_path, rarity_name)
    if features.baseline_cover is not None:
        young = 1 - np.clip(features.baseline_cover, 0, 1)
        rarity = rarity * (1 - np.clip(features.package_managed, 0, 1) * young)
    upgrade = upgrade_share(features, rarity_name)
    app = app_share(features)
    rollout = np.maximum(rollout_share(features), np.maximum(upgrade, app))
    maturity = np.maximum(
        np.clip(features.host_maturity, 0, 1), np.clip(features.fresh_destination, 0, 1)
    )
    known = np.clip(features.known, 0, 1)
    novelty = np.exp(-2 * np.maximum(features.host_path_buckets, 0)) * maturity * known
    host_buckets = np.maximum(features.host_path_buckets, 0)
    familiarity = 1 - np.exp(-host_buckets / HABIT_BUCKETS)
    weight = RARITY_WEIGHT + LOCATION_WEIGHT * np.clip(features.suspicion, 0, 1)
    habit = rarity * (1 - HABIT_WEIGHT * familiarity) * weight
    novel = 1 - NOVELTY_WEIGHT * novelty
    unrolled = 100 * (1 - (1 - habit) * novel)
    schedule = SCHEDULE_WEIGHT * _flag(features.recurring, unrolled)
    familiar = FAMILIAR_WEIGHT * _flag(features.familiar_destination, unrolled)
    peers = PEER_WEIGHT * _flag(features.peer_routine, unrolled)
    evidenced = unrolled * (1 - schedule) * (1 - familiar) * (1 - peers)
    total = evidenced * (1 - rollout)
    return Scores(
        score=np.round(np.clip(total, 0, 100), 1),
        rarity_path=rarity_path,
        rarity_name=rarity_name,
        rarity=rarity,
        rollout=rollout,
        upgrade=upgrade,
        app=app,
        weight=weight,
        familiarity=familiarity,
        novelty=novelty,
        unrolled=np.round(np.clip(unrolled, 0, 100), 1),
        schedule=schedule,
        familiar=familiar,
        peers=peers,
        evidenced=np.round(np.clip(evidenced, 0, 100), 1),
    )


def _flag(values: Array | None, like: Array) -> Array:
    """An optional 0/1 feature clipped to [0, 1]; zeros shaped like `like` when absent."""
    return np.zeros_like(like) if values is None else np.clip(values, 0, 1)


def young_rarity(rarity: Array, tenure: Array) -> Array:
    """A path first seen less than a day ago (in a baseline older than that) is not yet
    a baseline: its earlier sightings (the first hosts of a spreading implant) lower
    its rarity only as far as its tenure goes."""
    return np.asarray(1 - tenure * (1 - rarity))


def rollout_share(features: Features) -> Array:
    """How much a rollout explains, in [0, 1]: a young package-managed path on several
    hosts in the same bucket, or on a share of the fleet within a day (docs/scoring.md
    "Rollouts"). Never for volatile, hidden, home or local paths."""
    young = 1 - np.clip(features.established, 0, 1)
    at_once = np.clip(features.wave_hosts - 1, 0, 1)
    hosts = np.maximum(ROLLOUT_SHARE * features.fleet_hosts, MIN_ROLLOUT_HOSTS)
    share = np.clip((features.recent_hosts - 1) / (hosts - 1), 0, 1)
    package = np.clip(features.package_managed, 0, 1)
    return np.asarray(package * young * np.maximum(at_once, share))


def app_share(features: Features) -> Array:
    """1 for a program at a package-managed path in its first week that another host
    already used, started by a person here (u): an app people install on their
    workstations reaching one more of them (Obsidian, the third developer), counted on
    its first host's signal like an upgrade (docs/scoring.md "Apps people install").
    Never for a shell or a dual-use tool, which are never package-managed here (p)."""
    elsewhere = features.path_hosts if features.path_elsewhere is None else features.path_elsewhere
    seen = np.nan_to_num(elsewhere) >= 1
    person = _flag(features.person, features.adopting) > 0
    adopting = np.clip(features.adopting, 0, 1) * np.clip(features.package_managed, 0, 1)
    return np.asarray(adopting * (person & seen))


def upgrade_share(features: Features, rarity_name: Array) -> Array:
    """1 for a known program (a name routine in the fleet, or one this host used from
    another path) at a package-managed path in its first week that another host already
    used: an upgrade reaching hosts one by one (JDK 17 → 21 on CI runners, also where
    only two runners use java), counted on its first host's signal (docs/scoring.md
    "Rollouts")."""
    elsewhere = features.path_hosts if features.path_elsewhere is None else features.path_elsewhere
    seen = np.nan_to_num(elsewhere) >= 1
    routine_name = rarity_name <= 0
    if features.name_here is not None:
        routine_name = routine_name | (features.name_here > 0)
    adopting = np.clip(features.adopting, 0, 1) * np.clip(features.package_managed, 0, 1)
    return np.asarray(adopting * (routine_name & seen))
