"""Late data (baseline/detect/late.py): every host-bucket is scored when its data
arrives — an offline laptop's buffered results hours later, a backfill of days — against
the baseline before it in data time, with both times on the signal; what waits beyond
a run's budget is said and caught up by the next runs; data older than history is
counted, never silently dropped."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import orjson
import pytest
import requests
from click.testing import CliRunner
from support.late_fleet import (
    DAY,
    END,
    GAWK,
    HOSTS,
    HOUR,
    OFFLINE,
    SPAN,
    START,
    VICTIM,
    Line,
    arrival,
    fleet,
)
from support.serve_process import ServerProcess
from support.stores import ingest_lines

from rarenet.baseline.cli import main as cli
from rarenet.baseline.config import DetectSettings, load_config
from rarenet.baseline.deliver.formats import ecs_document, slack_message
from rarenet.baseline.deliver.outbox import get_signal
from rarenet.baseline.detect.backtest import backtest
from rarenet.baseline.detect.rule import RunResult, detect_once
from rarenet.baseline.detect.silence import arrivals
from rarenet.baseline.detect.why import why
from rarenet.baseline.simulate import SimulationSpec, simulate_to_path
from rarenet.baseline.store import Store
from rarenet.baseline.units import parse_time


@pytest.fixture(scope="module")
def lines() -> list[Line]:
    return fleet()


def ingest(store: Store, directory: Path, chunk: list[bytes], name: str) -> None:
    ingest_lines(store, chunk, directory / f"{name}.log")


def live(
    directory: Path,
    lines: list[Line],
    settings: DetectSettings,
    delayed: bool,
    until: int = END,
) -> list[RunResult]:
    """The live loop from two days in to `until`: ingest what has arrived by each run,
    then run the rule at that time (the first run also catches up on the two days
    before it)."""
    with Store(directory / "live.db") as store:
        runs = []
        sent = 0
        pending = sorted(((arrival(t, host) if delayed else t), data) for t, host, data in lines)
        for at in range(START + 2 * DAY, until + SPAN, SPAN):
            chunk = [data for seen, data in pending[sent:] if seen < at]
            sent += len(chunk)
            if chunk:
                ingest(store, directory, chunk, f"at-{at}")
            runs.append(detect_once(store, settings, at))
        return runs


def attack_signals(runs: list[RunResult]) -> list[dict[str, object]]:
    return [d for r in runs for d in r.documents if d["process"]["executable"] == GAWK]  # type: ignore[index]


def test_an_attack_whose_results_arrive_hours_late_is_signalled_when_they_arrive(
    tmp_path: Path, lines: list[Line], settings: DetectSettings
) -> None:
    (on_time_dir := tmp_path / "on-time").mkdir()
    (late_dir := tmp_path / "late").mkdir()
    on_time = live(on_time_dir, lines, settings, delayed=False)
    late = live(late_dir, lines, settings, delayed=True)
    (first,) = attack_signals(on_time)[:1]
    caught = attack_signals(late)
    assert caught, "the late gawk reverse shell was never signalled"
    assert caught[0]["id"] == first["id"]
    assert caught[0]["score"] == first["score"]
    lag = caught[0]["arrival"]["lag_seconds"]  # type: ignore[index]
    assert 2 * HOUR <= lag <= 3 * HOUR + 2 * SPAN, caught[0]["arrival"]
    assert first["arrival"]["lag_seconds"] <= SPAN  # type: ignore[index]
    # every signal of the on-time loop is raised by the late one too, and nothing else
    assert {d["id"] for r in late for d in r.documents} == {
        d["id"] for r in on_time for d in r.documents
    }
    scored_late = [r for r in late if r.steps]
    assert scored_late and all(r.behind == 0 for r in late)
    # explain, Slack and ECS say when its data could first be seen
    with Store(late_dir / "live.db") as store:
        at = parse_time(str(caught[0]["bucket"]["start"])) + SPAN  # type: ignore[index]
        answer = why(store, settings, VICTIM, GAWK, at, refresh=False)
        record = get_signal(store, str(caught[0]["id"]))
    (finding,) = [f for f in answer.findings if f.signal == caught[0]["id"]]
    assert "its data arrived late: seen" in finding.sentence, finding.sentence
    assert "data arrived " in slack_message(record)["text"]
    assert ecs_document(record)["event"]["ingested"] == caught[0]["arrival"]["seen"]  # type: ignore[index]


def test_a_backfill_is_scored_by_one_detect_exactly_as_the_backtest(
    tmp_path: Path, lines: list[Line]
) -> None:
    log = tmp_path / "fleet.log"
    log.write_bytes(b"".join(data for _, _, data in lines))
    config = load_config(None, env={})
    replay = backtest([str(log)], config, start=START, end=END)
    expected = {doc["id"] for doc in replay.signals}
    assert any(doc["process"]["executable"] == GAWK for doc in replay.signals)
    db = tmp_path / "fresh.db"
    runner = CliRunner()
    done = runner.invoke(cli, ["--db", str(db), "ingest", str(log)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli, ["--db", str(db), "detect", "--at", str(END), "--json"])
    assert done.exit_code == 1, done.output
    answer = orjson.loads(done.stdout)
    assert {doc["id"] for doc in answer["signals"]} == expected
    assert answer["run"]["late"]["behind"] == 0
    assert answer["run"]["late"]["host_buckets"] > 2 * 96 * len(HOSTS)


def test_a_backlog_beyond_the_budget_waits_says_so_and_the_next_runs_take_it(
    tmp_path: Path, lines: list[Line]
) -> None:
    log = tmp_path / "fleet.log"
    log.write_bytes(b"".join(data for _, _, data in lines))
    settings = load_config(None, env={"RARENET_DETECT_CATCH_UP": "400"}).detect
    with Store(tmp_path / "fleet.db") as store:
        ingest(store, tmp_path, [data for _, _, data in lines], "all")
        first = detect_once(store, settings, END)
        assert first.caught_up <= 400 and first.behind > 0
        assert first.behind_since == first.steps[-1].window_end  # oldest first, in order
        assert "still behind since" in first.late_summary()
        runs = [first]
        while runs[-1].behind and len(runs) < 40:
            runs.append(detect_once(store, settings, END))
        assert runs[-1].behind == 0 and 5 < len(runs) < 40
        queued = store.conn.execute("SELECT count(*) FROM pending_host_bucket").fetchone()[0]
        assert queued == 0
        stored = store.conn.execute(
            "SELECT count(*), sum(catch_up), sum(late) FROM runs WHERE catch_up = 1"
        ).fetchone()
        assert stored[0] == sum(len(r.steps) for r in runs)
        ids = {d["id"] for r in runs for d in r.documents}
    config = load_config(None, env={})
    replay = backtest([str(log)], config, start=START, end=END)
    assert ids == {doc["id"] for doc in replay.signals}


def test_data_older_than_history_is_counted_per_host_and_said_never_silently_dropped(
    tmp_path: Path, lines: list[Line]
) -> None:
    db = tmp_path / "fleet.db"
    runner = CliRunner()
    log = tmp_path / "fleet.log"
    log.write_bytes(b"".join(data for _, _, data in lines))
    assert runner.invoke(cli, ["--db", str(db), "ingest", str(log)]).exit_code == 0
    history = "1d"  # the first two days are older than history at END
    env = {"RARENET_DETECT_HISTORY": history}
    done = runner.invoke(cli, ["--db", str(db), "detect", "--at", str(END), "--json"], env=env)
    assert done.exit_code in (0, 1), done.output
    answer = orjson.loads(done.stdout)
    old_buckets = (END - DAY - START) // SPAN - 3  # before END - history, … the look-back
    assert answer["run"]["late"]["too_late"] >= old_buckets * len(HOSTS)
    assert "older than [detect] history" in done.stderr and "rarenet backtest" in done.stderr
    with Store(db) as store:
        per_host = dict(store.conn.execute("SELECT host, host_buckets FROM too_late"))
    assert set(per_host) == set(HOSTS)
    assert all(count >= old_buckets for count in per_host.values()), per_host


def test_a_catch_up_killed_midway_resumes_where_it_stopped_without_a_signal_twice(
    tmp_path: Path, lines: list[Line]
) -> None:
    log = tmp_path / "fleet.log"
    log.write_bytes(b"".join(data for _, _, data in lines))
    db = tmp_path / "fleet.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", str(db), "ingest", str(log)]).exit_code == 0
    env = {**os.environ, "RARENET_DETECT_CATCH_UP": "60"}
    command = [sys.executable, "-m", "rarenet", "--db", str(db), "detect", "--at", str(END)]
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps = 0
    deadline = time.monotonic() + 60
    while steps < 40 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
            try:
                steps = conn.execute("SELECT count(*) FROM runs WHERE catch_up = 1").fetchone()[0]
            except sqlite3.OperationalError:
                steps = 0  # the runs table is not there yet
    job.kill()
    job.wait(10)
    assert job.returncode == -signal.SIGKILL, "the catch-up ended before it could be killed"
    with Store(db) as store:
        left = store.conn.execute("SELECT count(*) FROM pending_host_bucket").fetchone()[0]
    assert left > 0
    done = runner.invoke(cli, ["--db", str(db), "detect", "--at", str(END)])
    assert done.exit_code in (0, 1), done.output
    with Store(db) as store:
        stored = [sid for (sid,) in store.conn.execute("SELECT id FROM signals")]
        left = store.conn.execute("SELECT count(*) FROM pending_host_bucket").fetchone()[0]
    assert left == 0
    replay = backtest([str(log)], load_config(None, env={}), start=START, end=END)
    assert sorted(stored) == sorted(doc["id"] for doc in replay.signals)


def test_health_shows_the_silent_laptop_then_how_late_its_data_arrived(
    tmp_path: Path, lines: list[Line], settings: DetectSettings
) -> None:
    quiet = OFFLINE[0] + 2 * HOUR  # the laptop has sent nothing for two hours
    live(tmp_path, lines, settings, delayed=True, until=quiet)
    with Store(tmp_path / "live.db") as store:
        health = arrivals(store.conn, SPAN)
    assert [h.host for h in health.silent] == [VICTIM] and health.silent_count == 1
    assert health.silent[0].active_share > 0.9
    assert health.lag_p99 is not None and health.lag_p99 <= SPAN  # all on time so far
    assert health.behind == 0 and not health.stalled and not health.too_late
    (tmp_path / "later").mkdir()
    back = OFFLINE[1] + 2 * SPAN  # it reconnected and sent its five buffered hours
    live(tmp_path / "later", lines, settings, delayed=True, until=back)
    with Store(tmp_path / "later" / "live.db") as store:
        health = arrivals(store.conn, SPAN)
        caught = store.conn.execute("SELECT sum(late) FROM runs WHERE catch_up = 1").fetchone()
    assert not health.silent
    assert health.lag_p50 is not None and health.lag_p50 <= SPAN  # the rest of the fleet
    assert health.lag_p99 is not None and health.lag_p99 >= 4 * HOUR, health
    assert caught[0] >= 4 * HOUR // SPAN  # its late hours were scored as catch-up steps


@pytest.mark.slow
def test_serve_shows_silence_and_too_late_data_on_health_and_metrics(
    tmp_path: Path, lines: list[Line]
) -> None:
    quiet = OFFLINE[0] + 2 * HOUR
    db = tmp_path / "rarenet.db"
    with Store(db) as store:
        ingest(store, tmp_path, [d for t, h, d in lines if arrival(t, h) < quiet], "so-far")
        detect_once(store, load_config(None, env={}).detect, quiet)
        # results that reach the server only now, ages after their data time: the
        # server's first run (at the wall clock) finds them older than history
        old = [d for t, h, d in lines if quiet <= t < quiet + SPAN and h == "web-00"]
        ingest(store, tmp_path, old, "old")
    with ServerProcess(tmp_path, tokens=(), max_ingest_lag="2h") as server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sum(
            server.metric("rarenet_detection_runs_total", f'status="{status}"')
            for status in ("ok", "learning")
        ):
            time.sleep(0.2)  # the server's first run, at start
        health = requests.get(f"{server.url}/health", timeout=30)
        metrics = requests.get(f"{server.url}/metrics", timeout=30).text
        healthz = requests.get(f"{server.url}/healthz", timeout=30)
    assert health.status_code == 200
    page = health.text
    assert 'id="silent-hosts"' in page and "1 host went silent" in page and VICTIM in page
    assert 'id="too-late"' in page and "web-00" in page
    assert 'id="catch-up"' in page and "nothing waits" in page
    assert "rarenet_silent_hosts 1.0" in metrics
    too_late = next(
        x for x in metrics.splitlines() if x.startswith("rarenet_too_late_host_buckets ")
    )
    assert float(too_late.split()[-1]) == 1  # one host-bucket of web-00
    assert "rarenet_catch_up_behind 0.0" in metrics and "rarenet_catch_up_stalled 0.0" in metrics
    # data from January, served now: nothing current is arriving, and Health says so
    assert healthz.status_code == 503
    (lagging,) = [f for f in healthz.json()["failures"] if f["part"] == "ingest"]
    assert "the newest data is" in lagging["reason"] and "max_ingest_lag" in lagging["reason"]


def test_a_catch_up_that_does_not_move_is_a_problem(tmp_path: Path) -> None:
    with Store(tmp_path / "fleet.db") as store:
        for n in range(4):
            store.conn.execute(
                "INSERT INTO runs (rule, started_at, data_time, window_start, window_end, "
                "observations, candidates, signals, truncated, suppressed, excepted, duration, "
                "status, catch_up, late, behind, behind_since) "
                "VALUES ('r', 0, ?, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'ok', 0, 0, ?, ?)",
                (START + n * SPAN, 500, START - DAY),
            )
        stalled = arrivals(store.conn, SPAN)
        store.conn.execute("UPDATE runs SET behind_since = ? WHERE id = 4", (START - DAY + SPAN,))
        moving = arrivals(store.conn, SPAN)
    assert stalled.stalled and "catch-up stalled: 500 host-buckets" in stalled.problems[0]
    assert not moving.stalled and not moving.problems and moving.behind == 500


@pytest.mark.slow
def test_serve_scores_a_posted_backfill_at_its_next_start_exactly_as_the_backtest(
    tmp_path: Path,
) -> None:
    """Two and a half days of a simulated fleet's history, ending an hour ago, posted to
    a running `rarenet serve`: the server's own schedule (its run at start-up, at the
    wall clock) scores all of it — no loop by hand — and raises exactly the signals
    `rarenet backtest` gives on the same log."""
    now = int(time.time())
    start = (now - 60 * HOUR) // SPAN * SPAN
    log, labels = tmp_path / "fleet.log", tmp_path / "labels.jsonl"
    spec = SimulationSpec(hosts=16, days=2.45, attacks=True, seed=8, start=start)
    simulate_to_path(spec, log, labels)
    expected = {doc["id"] for doc in backtest([str(log)], load_config(None, env={})).signals}
    assert len(expected) >= 3
    with ServerProcess(tmp_path, tokens=(), max_body="256MiB", max_ingest_lag="2h") as server:
        wait_for_runs(server, 1)  # its start-up run, on an empty store
        answer = requests.post(f"{server.url}/v1/ingest", data=log.read_bytes(), timeout=120)
        assert answer.status_code == 200 and answer.json()["rejected"] == 0, answer.text
        assert server.stop() == 0
        server.start()  # the next scheduled run: at start-up
        wait_for_runs(server, 1)
        assert "caught up" in server.output()  # its heartbeat line says so
        assert requests.get(f"{server.url}/healthz", timeout=30).status_code == 200  # current
    with Store(server.db) as store:
        got = {sid for (sid,) in store.conn.execute("SELECT id FROM signals")}
        behind = store.conn.execute("SELECT behind FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    assert got == expected
    assert behind == (0,)


def wait_for_runs(server: ServerProcess, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = sum(
            server.metric("rarenet_detection_runs_total", f'status="{status}"')
            for status in ("ok", "learning")
        )
        if done >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"serve made fewer than {count} run(s): {server.output()}")
