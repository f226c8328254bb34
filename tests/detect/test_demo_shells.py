"""The demo's fleet (`rarenet demo`'s defaults: 30 hosts, 2 days, seed 1): no shell is
ever explained as a rollout — its bash reverse shells are host signals, each with its own
reason (issue 31: the demo once said "rollout? new package-managed binary /usr/bin/bash on
4 hosts within a day")."""

from __future__ import annotations

from pathlib import Path

import pytest

from rarenet.baseline.config import load_config
from rarenet.baseline.detect.backtest import backtest
from rarenet.baseline.shells import is_plain_shell
from rarenet.baseline.simulate import SimulationSpec, read_labels, simulate_to_path

pytestmark = pytest.mark.slow


def test_no_shell_in_the_demo_fleet_is_a_rollout(tmp_path: Path) -> None:
    log, labels = tmp_path / "fleet.log", tmp_path / "labels.jsonl"
    simulate_to_path(SimulationSpec(30, 2.0, True, 1), str(log), str(labels))
    shells_attacked = {
        (label.host, label.name) for label in read_labels(labels) if is_plain_shell(label.name)
    }
    assert shells_attacked, "the demo fleet has shell attacks"
    result = backtest([str(log)], load_config(None, env={}), workdir=str(tmp_path))
    shells = [s for s in result.signals if is_plain_shell(s["process"]["name"])]
    assert {(s["host"]["name"], s["process"]["name"]) for s in shells} >= shells_attacked
    for signal in shells:
        rollout = signal["explanation"]["rollout"]
        assert signal["kind"] == "host" and rollout["discount"] == 0, signal["reason"]
        assert not signal["reason"].startswith("rollout?"), signal["reason"]
