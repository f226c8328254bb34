"""Rarity scoring: pure numpy functions (arrays in, arrays out, no I/O).

Documented with worked examples in docs/scoring.md. For a candidate — a host using a
binary (name, path) in bucket b — every input counts presence in the baseline window
[b - history, b), never raw connections and never the scored bucket itself:

  F   fleet host-buckets (hosts active per bucket, summed)     N   fleet size (peak hosts in a bucket)
  f   host-buckets where the key was present                   h   distinct hosts that used the key
  hk  this host's buckets with this path                       m   this host's maturity (buckets / warm-up)
  e   how established the path is in the fleet (age since first seen / (history/14), at most 1)
  c   distinct hosts using the path within the last history/14, this bucket included

  rarity(key)  = min(1 - ln(1+2f)/ln(1+2·0.05·F),  1 - ln(1+2h)/ln(1+2·max(0.05·N, 3))), in [0, 1]
  R            = max(rarity(path), rarity(name))           the rarer key decides (masquerade)
  spread       = clip((c-1)/2, 0, 1) · (1 - e)               a new binary on many hosts = a rollout
  familiarity  = 1 - exp(-hk/4)                              this host's own habit (hk capped at 12)
  R'           = R · (1 - spread) · (1 - 0.5·familiarity)
  novelty      = exp(-2·hk) · m · e                          new on a mature host, known in the fleet
  score        = 100 · (1 - (1 - R') · (1 - 0.6 · novelty))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

ROUTINE_SHARE = 0.05  # a key on ≥ 5 % of host-buckets (or hosts) is routine: rarity 0
MIN_ROUTINE_HOSTS = 3.0  # …and, in small fleets, on at least 3 hosts
NOVELTY_WEIGHT = 0.6  # a known binary new on a mature host alone scores 60
HABIT_WEIGHT = 0.5  # a rare binary this host itself uses routinely counts half
HABIT_BUCKETS = 4.0  # familiarity reaches 63 % after 4 buckets of use on this host
SPREAD_HOSTS = 3  # a brand-new path on 3+ hosts within a day is a rollout


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
    recent_hosts: Array  # c, this host included


@dataclass(frozen=True)
class Scores:
    """Scores in [0, 100] and the parts that explain them."""

    score: Array
    rarity_path: Array
    rarity_name: Array
    rarity: Array  # R
    spread: Array
    familiarity: Array
    novelty: Array


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
    rarity = np.maximum(rarity_path, rarity_name)
    established = np.clip(features.established, 0, 1)
    spread = np.clip((features.recent_hosts - 1) / (SPREAD_HOSTS - 1), 0, 1) * (1 - established)
    novelty = (
        np.exp(-2 * np.maximum(features.host_path_buckets, 0))
        * np.clip(features.host_maturity, 0, 1)
        * established
    )
    host_buckets = np.maximum(features.host_path_buckets, 0)
    familiarity = 1 - np.exp(-host_buckets / HABIT_BUCKETS)
    fleet_part = rarity * (1 - spread) * (1 - HABIT_WEIGHT * familiarity)
    total = 100 * (1 - (1 - fleet_part) * (1 - NOVELTY_WEIGHT * novelty))
    return Scores(
        score=np.round(np.clip(total, 0, 100), 1),
        rarity_path=rarity_path,
        rarity_name=rarity_name,
        rarity=rarity,
        spread=spread,
        familiarity=familiarity,
        novelty=novelty,
    )
