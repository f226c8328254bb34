"""Every scenario family of `rarenet simulate --scenarios all`, on two seeds: the
behaviour issue 11 asks for, with thresholds that fail if it regresses. rarenet alone:
the comparison with the reference detectors is `make bench` (docs/quality.md)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from support.quality_eval import FleetQuality, measure

SEEDS = (1, 2)
HOSTS, DAYS = 30, 5.0  # attacks from day 1.5; host novelty needs 3 days of a host's history

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> list[FleetQuality]:
    workdir: Path = tmp_path_factory.mktemp("quality")
    # One process per seed (the machine has 2 cores; each fleet is CPU-bound Python).
    with ProcessPoolExecutor(len(SEEDS), mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = [
            pool.submit(measure, HOSTS, DAYS, seed, workdir, references=False) for seed in SEEDS
        ]
        return [run.result() for run in runs]


def caught(fleets: list[FleetQuality], family: str) -> tuple[int, int]:
    pairs = [fleet.recall("rarenet", family) for fleet in fleets]
    return sum(c for c, _ in pairs), sum(n for _, n in pairs)


@pytest.mark.parametrize(
    "family", ["spread", "repeat", "never-seen", "masquerade", "child-shell", "returning"]
)
def test_every_host_and_every_use_is_signalled(fleets: list[FleetQuality], family: str) -> None:
    got, labelled = caught(fleets, family)
    assert labelled >= len(SEEDS), f"{family}: too few labels to judge ({labelled})"
    assert got == labelled, f"{family}: {got} of {labelled}"


def test_spread_reaches_several_hosts_and_each_is_its_own_signal_in_one_group(
    fleets: list[FleetQuality],
) -> None:
    for fleet in fleets:
        implants = {lb.path for lb in fleet.labels if lb.family == "spread"}
        for path in implants:
            docs = [d for d in fleet.documents if d["process"]["executable"] == path]
            hosts = {lb.host for lb in fleet.labels if lb.path == path}
            assert len(hosts) >= 2 and {d["host"]["name"] for d in docs} >= hosts
            assert len({d["group"] for d in docs}) == 1, (path, [d["group"] for d in docs])
            assert all(d["kind"] == "host" for d in docs)
            later = [d for d in docs if d["group"] != d["id"]]
            assert later and all("also on" in d["reason"] for d in later)


def test_a_return_is_its_own_signal_in_the_first_visits_group(
    fleets: list[FleetQuality],
) -> None:
    """The same tool back on the same host days later: a new signal that names the first
    visit's signal, in its group (docs/scoring.md "Returning attackers")."""
    for fleet in fleets:
        for back in (lb for lb in fleet.labels if lb.family == "returning"):
            mine = sorted(
                (d for d in fleet.documents
                 if d["host"]["name"] == back.host and d["process"]["executable"] == back.path),
                key=lambda d: d["bucket"]["start"],
            )  # fmt: skip
            first, later = mine[0], [d for d in mine if "returning" in d["explanation"]]
            assert later, [d["reason"] for d in mine]
            for doc in later:
                assert doc["group"] == first["group"]
                assert doc["reason"].startswith("returning: this binary raised signal")


def test_host_novelty_every_bash_web_shell(fleets: list[FleetQuality]) -> None:
    """bash on a web server: caught on a mature host by host novelty, and on a younger
    one because the shell holds a socket to an address no bash in the fleet used."""
    got, labelled = caught(fleets, "host-novelty")
    assert labelled >= len(SEEDS) and got == labelled, (got, labelled)
    young = [
        d
        for fleet in fleets
        for d in fleet.documents
        if d["process"]["name"] == "bash" and d["explanation"]["host"]["maturity"] < 1
    ]
    for doc in young:
        assert doc["explanation"]["host"]["fresh_destination"] is True
        assert "an address no bash in the fleet used before" in doc["reason"]


def test_a_child_holding_the_socket_names_the_shell(fleets: list[FleetQuality]) -> None:
    for fleet in fleets:
        for label in (lb for lb in fleet.labels if lb.family == "child-shell"):
            (doc,) = [
                d
                for d in fleet.documents
                if d["host"]["name"] == label.host and d["process"]["executable"] == label.path
            ]
            assert "held by a child of the shell bash" in doc["reason"]
            assert doc["process"]["parent"]["name"] == "bash"


def test_rollouts_and_weekly_jobs_raise_at_most_one_signal_each(
    fleets: list[FleetQuality],
) -> None:
    for fleet in fleets:
        rollouts = fleet.benign_signals("rarenet", "rollout")
        assert any("java" in p for p in rollouts), rollouts  # the JDK upgrade is in each run
        assert rollouts and max(rollouts.values()) <= 1, rollouts
        weekly = fleet.benign_signals("rarenet", "weekly")
        assert weekly and max(weekly.values()) <= 1, weekly


def test_an_app_users_install_raises_at_most_one_signal_across_the_fleet(
    fleets: list[FleetQuality],
) -> None:
    """zoom and obsidian in /opt, the JetBrains toolbox in each developer's home, reaching
    2–5 workstations over four days: rarenet signals each at most once (new terms, which
    signals the toolbox on every workstation, is beside it in `make bench`)."""
    for fleet in fleets:
        apps = fleet.benign_signals("rarenet", "user-app")
        assert len(apps) >= 2, apps  # the apps are in the run
        assert max(apps.values()) <= 1, apps


def test_re_imaged_hosts_stay_quiet(fleets: list[FleetQuality]) -> None:
    for fleet in fleets:
        reimaged = [d for d in fleet.documents if d["host"]["name"].endswith("-r")]
        labelled = {lb.host for lb in fleet.labels}
        assert [d["id"] for d in reimaged if d["host"]["name"] not in labelled] == []


# Scheduled jobs (weekly, monthly, quarterly) reach hosts one by one over the run's first
# quarter; a small fleet for 16 days sees every weekly job run again (the monthly and
# quarterly ones recur in tests/detect/test_schedules.py and `make bench`). Hourly buckets
# keep the backtest short; schedules are read by the day (baseline/detect/schedule.py).
SCHEDULED_SEEDS, SCHEDULED_HOSTS, SCHEDULED_DAYS = (5, 6), 12, 16.0
HOURLY = {
    "RARENET_DETECT_BUCKET_SPAN": "1h",
    "RARENET_DETECT_INTERVAL": "1h",
    "RARENET_DETECT_LOOKBACK": "3h",
}


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> list[FleetQuality]:
    workdir: Path = tmp_path_factory.mktemp("scheduled")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = [
            pool.submit(
                measure,
                SCHEDULED_HOSTS,
                SCHEDULED_DAYS,
                seed,
                workdir,
                env=HOURLY,
                references=False,
            )
            for seed in SCHEDULED_SEEDS
        ]
        return [run.result() for run in runs]


def test_a_scheduled_job_is_quiet_from_its_second_run(scheduled: list[FleetQuality]) -> None:
    """Every job that ran again on a host raised no signal after its first run there, on
    both seeds (attack recall is judged on the default 15-minute buckets above and in
    docs/quality.md)."""
    for fleet in scheduled:
        again = [pair for pair, days in fleet.run_days.items() if len(days) >= 2]
        assert len(again) >= 2, fleet.run_days  # enough second runs to judge
        _first, later = fleet.scheduled_signals("rarenet")
        assert later == 0, [
            (d["host"]["name"], d["process"]["executable"], d["bucket"]["start"], d["reason"])
            for d in fleet.documents
            if (d["host"]["name"], d["process"]["executable"]) in fleet.first_runs
        ]
