"""The extension's pure-Python score equals the rule's numpy score.

First the formula on random inputs (hypothesis), then end to end: a small fleet is
ingested, the rule gathers its features for the attack bucket, a snapshot is exported for
each candidate's host at that bucket, and the extension's lookup scores the same binary.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.hand_fleet import (
    ATTACK_AT,
    SPAN,
)

from rarenet.baseline.config import load_config
from rarenet.baseline.detect import scoring as rule_scoring
from rarenet.baseline.detect.features import gather
from rarenet.baseline.detect.presence import refresh_presence
from rarenet.baseline.detect.snapshot import build_snapshot
from rarenet.baseline.store import Store
from rarenet.extension import scoring as ext_scoring
from rarenet.extension.assess import assess
from rarenet.extension.snapshot import parse_snapshot

counts = st.integers(min_value=0, max_value=5_000_000).map(float)
small = st.integers(min_value=0, max_value=400).map(float)
unit = st.floats(min_value=-0.5, max_value=1.5, allow_nan=False)


@st.composite
def inputs(draw: st.DrawFn) -> ext_scoring.Inputs:
    fleet_f = draw(st.one_of(counts, small))
    fleet_n = draw(st.one_of(small, st.just(0.0)))
    has_path = draw(st.booleans())
    return ext_scoring.Inputs(
        fleet_host_buckets=fleet_f,
        fleet_hosts=fleet_n,
        path_host_buckets=draw(st.one_of(counts, small)) if has_path else None,
        path_hosts=draw(small) if has_path else None,
        name_host_buckets=draw(st.one_of(counts, small)),
        name_hosts=draw(small),
        host_path_buckets=draw(st.one_of(small, st.integers(0, 12).map(float))),
        host_maturity=draw(unit),
        established=draw(unit),
        known=draw(unit),
        recent_hosts=draw(st.integers(0, 20).map(float)),
        wave_hosts=draw(st.integers(0, 5).map(float)),
        package_managed=draw(st.sampled_from([0.0, 1.0])),
        suspicion=draw(st.sampled_from([0.0, 0.25, 0.4, 1.0])),
        tenure=draw(unit),
        fresh_destination=draw(st.sampled_from([0.0, 1.0])),
        adopting=draw(st.sampled_from([0.0, 1.0])),
        baseline_cover=draw(st.one_of(unit, st.just(1.0))),
    )


def numpy_score(x: ext_scoring.Inputs) -> rule_scoring.Scores:
    def arr(value: float | None) -> np.ndarray:
        return np.array([math.nan if value is None else value], dtype=float)

    return rule_scoring.score(
        rule_scoring.Features(
            fleet_host_buckets=arr(x.fleet_host_buckets),
            fleet_hosts=arr(x.fleet_hosts),
            path_host_buckets=arr(x.path_host_buckets),
            path_hosts=arr(x.path_hosts),
            name_host_buckets=arr(x.name_host_buckets),
            name_hosts=arr(x.name_hosts),
            host_path_buckets=arr(x.host_path_buckets),
            host_maturity=arr(x.host_maturity),
            established=arr(x.established),
            known=arr(x.known),
            recent_hosts=arr(x.recent_hosts),
            wave_hosts=arr(x.wave_hosts),
            package_managed=arr(x.package_managed),
            suspicion=arr(x.suspicion),
            tenure=arr(x.tenure),
            fresh_destination=arr(x.fresh_destination),
            adopting=arr(x.adopting),
            baseline_cover=arr(x.baseline_cover),
        )
    )


@settings(max_examples=1500, deadline=None)
@given(inputs())
def test_scalar_port_equals_numpy_formula(x: ext_scoring.Inputs) -> None:
    expected = numpy_score(x)
    got = ext_scoring.score(x)
    assert got.score == float(expected.score[0])
    assert got.rarity == pytest.approx(float(expected.rarity[0]), abs=1e-12)
    assert got.novelty == pytest.approx(float(expected.novelty[0]), abs=1e-12)
    assert got.rollout == pytest.approx(float(expected.rollout[0]), abs=1e-12)
    assert got.unrolled == float(expected.unrolled[0])


def test_constants_match_the_rule() -> None:
    from rarenet.baseline.detect import features

    for name in ("ROUTINE_SHARE", "MIN_ROUTINE_HOSTS", "NOVELTY_WEIGHT", "HABIT_WEIGHT"):
        assert getattr(ext_scoring, name) == getattr(rule_scoring, name), name
    assert ext_scoring.HABIT_BUCKETS == rule_scoring.HABIT_BUCKETS
    for name in ("RARITY_WEIGHT", "LOCATION_WEIGHT", "ROLLOUT_SHARE", "MIN_ROLLOUT_HOSTS"):
        assert getattr(ext_scoring, name) == getattr(rule_scoring, name), name
    assert ext_scoring.HOST_PATH_CAP == features.HOST_PATH_CAP
    assert ext_scoring.ESTABLISHED_SHARE == features.ESTABLISHED_SHARE
    assert ext_scoring.ADOPTION_SHARE == 0.5  # a week of the default 14-day history


def test_known_is_e_except_in_the_baselines_first_day() -> None:
    day = 86400.0
    assert ext_scoring.known(age=3600, day=day, at=10 * day, baseline_since=0) == 3600 / day
    assert ext_scoring.known(age=3 * day, day=day, at=10 * day, baseline_since=0) == 1.0
    assert ext_scoring.known(age=3600, day=day, at=0.5 * day, baseline_since=0) == 1.0


def test_worked_examples_of_docs_scoring() -> None:
    """Cases A, C, D, E of docs/scoring.md (200 hosts, 14 days)."""
    base = {"fleet_host_buckets": 268800.0, "fleet_hosts": 200.0, "host_maturity": 1.0}
    cases = [
        (dict(path_host_buckets=0.0, path_hosts=0.0, name_host_buckets=0.0, name_hosts=0.0,
              host_path_buckets=0.0, established=0.0, recent_hosts=1.0, suspicion=1.0), 100.0),
        (dict(path_host_buckets=26880.0, path_hosts=20.0, name_host_buckets=26880.0,
              name_hosts=20.0, host_path_buckets=0.0, established=1.0, recent_hosts=1.0), 60.0),
        (dict(path_host_buckets=80640.0, path_hosts=150.0, name_host_buckets=80640.0,
              name_hosts=150.0, host_path_buckets=12.0, established=1.0, recent_hosts=1.0), 0.0),
        (dict(path_host_buckets=8.0, path_hosts=1.0, name_host_buckets=8.0, name_hosts=1.0,
              host_path_buckets=8.0, established=1.0, recent_hosts=1.0, suspicion=0.4), 31.9),
    ]  # fmt: skip
    for values, expected in cases:
        known = {"known": values["established"]}  # past the baseline's first day: k = e
        assert ext_scoring.score(ext_scoring.Inputs(**base, **known, **values)).score == expected


@pytest.mark.slow
def test_snapshot_lookup_scores_like_the_rule(hand_fleet_store: Store) -> None:
    """Every candidate of the attack bucket: the extension, given the snapshot exported for
    that host at that bucket, gives the rule's score. The rollout's later hosts are the
    one known difference: the rule counts hosts in the scored bucket itself (spread), which
    a snapshot of the window before it cannot know."""
    settings_ = load_config(None, env={}).detect
    bucket = ATTACK_AT - ATTACK_AT % SPAN
    compared = 0
    store = hand_fleet_store
    refresh_presence(store, SPAN)
    gathered = gather(store, SPAN, int(settings_.history), [bucket], settings_.warmup_buckets)
    scores = rule_scoring.score(gathered.features)
    snapshots: dict[str, object] = {}
    for i, cand in enumerate(gathered.candidates):
        if cand.host not in snapshots:
            doc = build_snapshot(store, settings_, host=cand.host, at=bucket)
            snapshots[cand.host] = parse_snapshot(orjson.dumps(doc))
        result = assess(snapshots[cand.host], cand.name, cand.path)  # type: ignore[arg-type]
        if cand.path == "/opt/acme/bin/acme-agent":
            assert gathered.features.recent_hosts[i] > 1  # the in-bucket rollout
            continue
        assert result.score.score == float(scores.score[i]), (cand, result.reason)
        compared += 1
    assert compared >= 27
    beacon = assess(snapshots["web-05"], "beacon", "/tmp/.x/beacon")  # type: ignore[arg-type]
    assert beacon.score.score == 100.0 and "never seen" in beacon.reason
    shell = assess(snapshots["web-07"], "bash", "/usr/bin/bash")  # type: ignore[arg-type]
    assert shell.score.score == 60.0 and "new on this host" in shell.reason
