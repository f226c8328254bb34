"""Scoring: hand-computed golden cases and hypothesis properties of the pure functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rarenet.baseline.detect.scoring import Features, key_rarity, score

FLEET_F = 200 * 1344.0  # 200 hosts × 14 days of 15-minute buckets
FLEET_N = 200.0


def features(**values: float) -> Features:
    base = {
        "fleet_host_buckets": FLEET_F,
        "fleet_hosts": FLEET_N,
        "path_host_buckets": 0.0,
        "path_hosts": 0.0,
        "name_host_buckets": 0.0,
        "name_hosts": 0.0,
        "host_path_buckets": 0.0,
        "host_maturity": 1.0,
        "established": 0.0,
        "tenure": 1.0,
        "recent_hosts": 1.0,
        "wave_hosts": 1.0,
        "package_managed": 0.0,
        "suspicion": 1.0,  # a volatile or hidden location, e.g. /tmp/.x
        "fresh_destination": 0.0,
        "adopting": 0.0,
    }
    base.update(values)
    base.setdefault("known", base["established"])  # as the rule's features, past the first day
    return Features(**{key: np.array([value], dtype=float) for key, value in base.items()})


def one(**values: float) -> float:
    return float(score(features(**values)).score[0])


def test_never_seen_in_a_mature_fleet_scores_at_least_90() -> None:
    assert one() == 100.0


def test_the_location_spreads_the_top_of_the_scale() -> None:
    """Never seen anywhere: from /dev/shm 100, from a home directory 88, from a local
    directory 85, from a package-managed one 80 — all signals, ranked by where they run."""
    assert one(suspicion=0.4) == 88.0
    assert one(suspicion=0.25) == 85.0
    assert one(suspicion=0.0, package_managed=1.0) == 80.0
    assert one(suspicion=1.0) > one(suspicion=0.4) > one(suspicion=0.0) >= 80.0


def test_routine_binary_this_host_used_before_scores_below_25() -> None:
    routine = {
        "path_host_buckets": 0.1 * FLEET_F,
        "path_hosts": 100,
        "name_host_buckets": 0.1 * FLEET_F,
        "name_hosts": 100,
    }
    assert one(**routine, host_path_buckets=1, established=1) == pytest.approx(
        100 * 0.6 * math.exp(-2), abs=0.05
    )
    assert one(**routine, host_path_buckets=1, established=1) < 25


def test_common_elsewhere_but_new_on_a_mature_host_is_worth_a_look() -> None:
    bash_on_db_servers = {
        "path_host_buckets": 0.1 * FLEET_F,
        "path_hosts": 20,
        "name_host_buckets": 0.1 * FLEET_F,
        "name_hosts": 20,
    }
    assert one(**bash_on_db_servers, established=1) == 60.0  # 100 · 0.6 · 1
    assert (
        one(**bash_on_db_servers, established=1, host_maturity=0.1) == 6.0
    )  # a new host: everything is new


def test_masquerade_common_name_odd_path_scores_high() -> None:
    assert (
        one(name_host_buckets=0.5 * FLEET_F, name_hosts=200, path_host_buckets=0, path_hosts=0)
        == 100.0
    )


def test_rollout_new_binary_on_many_hosts_scores_low() -> None:
    package = {"package_managed": 1.0, "suspicion": 0.0}
    assert one(**package, wave_hosts=2) == 0.0  # two hosts in the same bucket: automation
    assert one(**package, recent_hosts=20) == 0.0  # 10 % of 200 hosts within a day
    assert one(**package, recent_hosts=2) == pytest.approx(80 * (1 - 1 / 19), abs=0.05)
    assert one(**package, recent_hosts=20, established=1.0, host_path_buckets=1) > 50  # not young


def test_writable_and_hidden_locations_are_never_a_rollout() -> None:
    for where in (1.0, 0.4, 0.25):  # volatile/hidden, home, local
        assert one(suspicion=where, wave_hosts=5, recent_hosts=50) == one(suspicion=where)


def test_hand_computed_rarity() -> None:
    # f = 10 host-buckets of F = 268,800: 1 - ln(21)/ln(1 + 2·0.05·268800) = 1 - 3.0445/10.2066
    rarity = key_rarity(np.array([10.0]), np.array([1.0]), np.array([FLEET_F]), np.array([FLEET_N]))
    by_hosts = 1 - math.log1p(2) / math.log1p(2 * 10)  # 10 = 5 % of 200 hosts
    assert rarity[0] == pytest.approx(min(1 - math.log1p(20) / math.log1p(26880), by_hosts))


def test_unknown_path_falls_back_to_the_name() -> None:
    assert (
        one(path_host_buckets=math.nan, path_hosts=math.nan, name_host_buckets=0, name_hosts=0)
        == 100.0
    )


counts = st.floats(min_value=0, max_value=FLEET_F, allow_nan=False)
hosts = st.floats(min_value=0, max_value=FLEET_N, allow_nan=False)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    f=counts,
    h=hosts,
    nf=counts,
    nh=hosts,
    hk=st.floats(0, 50),
    m=unit,
    e=unit,
    c=st.floats(1, 50),
    w=st.floats(1, 50),
    p=st.sampled_from([0.0, 1.0]),
    s=unit,
)
def test_bounded_and_deterministic(
    f: float,
    h: float,
    nf: float,
    nh: float,
    hk: float,
    m: float,
    e: float,
    c: float,
    w: float,
    p: float,
    s: float,
) -> None:
    values = {
        "path_host_buckets": f,
        "path_hosts": h,
        "name_host_buckets": nf,
        "name_hosts": nh,
        "host_path_buckets": hk,
        "host_maturity": m,
        "established": e,
        "tenure": 1.0,
        "recent_hosts": c,
        "wave_hosts": w,
        "package_managed": p,
        "suspicion": s,
    }
    first = one(**values)
    assert 0.0 <= first <= 100.0
    assert one(**values) == first


@settings(max_examples=300, deadline=None)
@given(
    f=counts,
    extra=st.floats(0, 1000),
    h=hosts,
    hk=st.floats(0, 20),
    m=unit,
    e=unit,
    p=st.sampled_from([0.0, 1.0]),
    s=unit,
)
def test_monotone_in_rarity(
    f: float, extra: float, h: float, hk: float, m: float, e: float, p: float, s: float
) -> None:
    """More fleet use, more hosts, more use on this host, or wider spread never raise a score."""
    base = {
        "path_host_buckets": f,
        "path_hosts": h,
        "name_host_buckets": f,
        "name_hosts": h,
        "host_path_buckets": hk,
        "host_maturity": m,
        "established": e,
        "tenure": 1.0,
        "package_managed": p,
        "suspicion": s,
    }
    reference = one(**base)
    assert (
        one(**{**base, "path_host_buckets": f + extra, "name_host_buckets": f + extra}) <= reference
    )
    assert one(**{**base, "path_hosts": h + 1, "name_hosts": h + 1}) <= reference
    assert one(**{**base, "host_path_buckets": hk + 1}) <= reference
    assert one(**{**base, "recent_hosts": 4}) <= reference
    assert one(**{**base, "wave_hosts": 3}) <= reference
    # an upgrade in its first week discounts; a shell's fresh destination only adds
    assert one(**{**base, "adopting": 1.0}) <= reference
    assert one(**{**base, "fresh_destination": 1.0}) >= reference
    # a younger baseline (first day) or a recurrence never raise a score
    assert one(**{**base, "baseline_cover": 0.3}) <= reference
    assert one(**{**base, "recurring": 1.0}) <= reference


def test_a_package_program_unseen_on_the_first_day_counts_as_much_as_the_day_covered() -> None:
    """y: at 6 h of baseline a never-seen package binary keeps a quarter of its fleet
    rarity; a dropper (not package-managed) keeps all of it; a whole day is no discount."""
    package = {"package_managed": 1.0, "suspicion": 0.0}
    assert one(**package) == 80.0
    assert one(**package, baseline_cover=1.0) == 80.0
    assert one(**package, baseline_cover=0.25) == 20.0
    assert one(baseline_cover=0.25) == one() == 100.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(counts, hosts, unit), min_size=1, max_size=20), st.randoms())
def test_candidates_score_independently_of_order(
    rows: list[tuple[float, float, float]], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    order = list(range(len(rows)))
    rnd.shuffle(order)

    def batch(items: list[tuple[float, float, float]]) -> np.ndarray:
        cols = {
            "fleet_host_buckets": [FLEET_F] * len(items), "fleet_hosts": [FLEET_N] * len(items),
            "path_host_buckets": [r[0] for r in items], "path_hosts": [r[1] for r in items],
            "name_host_buckets": [r[0] for r in items], "name_hosts": [r[1] for r in items],
            "host_path_buckets": [0.0] * len(items), "host_maturity": [r[2] for r in items],
            "established": [1.0] * len(items), "known": [1.0] * len(items), "tenure": [1.0] * len(items), "recent_hosts": [1.0] * len(items),
            "wave_hosts": [1.0] * len(items), "package_managed": [0.0] * len(items),
            "suspicion": [0.5] * len(items), "fresh_destination": [0.0] * len(items),
            "adopting": [0.0] * len(items),
        }  # fmt: skip
        return score(Features(**{k: np.array(v, dtype=float) for k, v in cols.items()})).score

    straight = batch(rows)
    shuffled = batch([rows[i] for i in order])
    assert [shuffled[order.index(i)] for i in range(len(rows))] == list(straight)
