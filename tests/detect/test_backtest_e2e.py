"""End to end: `rarenet backtest` over a simulated 100-host, 10-day fleet with injected
attacks (reverse shells from bash, nc, socat, perl, awk, openssl, telnet; a /tmp beacon;
a copied curl in an odd path; sshd and kworker look-alikes in /dev/shm), rollouts, cron
jobs, hosts joining late and user tools. Asserts the specific signals and silences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from rarenet.baseline.simulate import read_labels

pytestmark = pytest.mark.slow

TECHNIQUES = {
    "reverse-shell-bash", "reverse-shell-nc", "reverse-shell-socat", "reverse-shell-perl",
    "reverse-shell-awk", "reverse-shell-openssl", "telnet-c2", "tmp-beacon",
    "masquerade-path-curl", "masquerade-shm-sshd", "masquerade-shm-kworker",
}  # fmt: skip


@pytest.fixture(scope="module")
def outcome(e2e_backtest_dir: Path) -> tuple[dict[str, Any], list[Any], Path]:
    """`rarenet backtest --labels --json` over the fleet (made in the background: see
    tests/support/e2e_backtest.py)."""
    document = orjson.loads((e2e_backtest_dir / "result.json").read_bytes())
    return document, read_labels(e2e_backtest_dir / "fleet.labels.jsonl"), e2e_backtest_dir


def test_every_attack_is_signalled_in_the_first_run_that_can_see_it(
    outcome: tuple[dict[str, Any], list[Any], Path],
) -> None:
    document, labels, _ = outcome
    assert {label.technique for label in labels} == TECHNIQUES
    metrics = document["metrics"]
    assert metrics["labelled"] == len(TECHNIQUES)
    assert metrics["detected"] == metrics["labelled"] and metrics["recall"] == 1.0
    assert metrics["detected_in_first_run"] == metrics["labelled"]
    signalled = {(s["host"]["name"], s["process"]["executable"]) for s in document["signals"]}
    for label in labels:
        assert (label.host, label.path) in signalled, (
            f"{label.technique} on {label.host} was missed"
        )


def test_quiet_on_normal_days(outcome: tuple[dict[str, Any], list[Any], Path]) -> None:
    document, labels, _ = outcome
    metrics = document["metrics"]
    assert metrics["false_per_100_host_days"] <= 1.0
    attacks = {(label.host, label.path) for label in labels}
    false = [
        s
        for s in document["signals"]
        if (s["host"]["name"], s["process"]["executable"]) not in attacks
    ]
    unexplained = [
        (s["host"]["name"], s["process"]["executable"], s["score"])
        for s in false
        if not (
            s["process"]["executable"].startswith("/home/")  # a user's own tools: rare indeed
            or "java-21" in s["process"]["executable"]  # the JDK upgrade's first host
            or s["explanation"]["decided_by"] == "host novelty"
            or s["kind"] == "rollout"  # a rollout's one signal (counted by the next test)
        )
    ]
    assert unexplained == []
    assert sum(s["explanation"]["decided_by"] == "host novelty" for s in false) <= 2


def test_a_fleet_wide_rollout_and_the_jdk_upgrade_raise_at_most_one_signal(
    outcome: tuple[dict[str, Any], list[Any], Path],
) -> None:
    document, _, _ = outcome
    agent = [s for s in document["signals"] if "acme-agent" in s["process"]["executable"]]
    assert len(agent) <= 1
    jdk = [s for s in document["signals"] if "java-21" in s["process"]["executable"]]
    assert len(jdk) <= 1, [(s["host"]["name"], s["bucket"]["start"]) for s in jdk]
    rollouts = [s["process"]["executable"] for s in document["signals"] if s["kind"] == "rollout"]
    assert len(rollouts) == len(set(rollouts)), "each rollout pages once"


def test_nothing_fires_during_warm_up_and_every_signal_explains_itself(
    outcome: tuple[dict[str, Any], list[Any], Path],
) -> None:
    document, _, _ = outcome
    for signal in document["signals"]:
        exp = signal["explanation"]
        assert exp["fleet"]["history_buckets"] >= exp["fleet"]["warmup_buckets"]
        assert signal["score"] >= 50 and signal["reason"]
        assert exp["decided_by"] in {"path", "name", "host novelty"}
        assert exp["path"]["host_buckets"] >= 0 and exp["fleet"]["host_buckets"] > 0
