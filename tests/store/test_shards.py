"""One fleet-wide rule over host-sharded stores (baseline/detect/shards.py): 2 and 3
shards raise exactly the signals of one node over the same data (ids, scores, whole
documents with their explanations), and a shard down for an hour of data time loses
and duplicates nothing once it is back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.serve_process import SHARD_TOKEN, TOKEN, ServerProcess
from support.shard_fleet import Switchable, runs, signals

from rarenet.baseline.config import load_config
from rarenet.baseline.detect.decide import Outcome
from rarenet.baseline.detect.remote import RemoteSource
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.detect.shards import ShardUnavailable, detect_sharded
from rarenet.baseline.detect.source import LocalSource
from rarenet.baseline.detect.suspects import open_suspects
from rarenet.baseline.detect.why import why
from rarenet.baseline.ingest.model import OBSERVATION_COLUMNS
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.simulate import SimulationSpec, simulate_to_path
from rarenet.baseline.store import Store
from rarenet.baseline.units import parse_time

pytestmark = pytest.mark.slow

HOSTS, DAYS, SEED = 16, 2.0, 4
COLUMNS = ", ".join(OBSERVATION_COLUMNS)

SHARD_ROLE = '[detect]\nrole = "shard"\n'


def shard_of(host: str, shards: int) -> int:
    return zlib.crc32(host.encode()) % shards


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A simulated fleet with every scenario family, ingested once: (store, first, last)."""
    workdir = tmp_path_factory.mktemp("shards")
    log = workdir / "fleet.log.gz"
    spec = SimulationSpec(hosts=HOSTS, days=DAYS, attacks=True, seed=SEED, scenarios="all")
    simulate_to_path(spec, log, workdir / "labels.jsonl")
    source = workdir / "source.db"
    with Store(source) as store:
        report = Ingester(store, load_config(None, env={})).ingest([str(log)])
        assert not report.errors
        first, last = store.conn.execute("SELECT min(time), max(time) FROM observations").fetchone()
    return source, int(first), int(last)


def copy(store: Store, source: Path, start: int, end: int, shard: int | None, of: int) -> None:
    """Observations with time in [start, end) of the hosts of `shard` (all: None)."""
    store.conn.create_function("shard_of", 2, shard_of, deterministic=True)
    store.conn.execute("ATTACH DATABASE ? AS source", (str(source),))
    try:
        with store.transaction() as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO observations ({COLUMNS}) SELECT {COLUMNS} "
                "FROM source.observations WHERE time >= ? AND time < ? "
                "AND (? IS NULL OR shard_of(host, ?) = ?) ORDER BY time, digest",
                (start, end, shard, of, shard),
            )
    finally:
        store.conn.execute("DETACH DATABASE source")


def single_node(fleet: tuple[Path, int, int], db: Path) -> dict[str, Any]:
    source, first, last = fleet
    settings = load_config(None, env={}).detect
    with Store(db) as store:
        copied = first
        for at in runs(first, last, int(settings.interval)):
            copy(store, source, copied, at, None, 1)
            copied = at
            detect_once(store, settings, at)
        return signals(store)


@pytest.fixture(scope="module")
def reference(fleet: tuple[Path, int, int], tmp_path_factory: pytest.TempPathFactory) -> Any:
    found = single_node(fleet, tmp_path_factory.mktemp("single") / "single.db")
    assert len(found) >= 5, f"the fleet should raise signals to compare: {len(found)}"
    return found


def sharded(
    fleet: tuple[Path, int, int], workdir: Path, count: int, outage: tuple[int, int] | None = None
) -> tuple[dict[str, Any], list[tuple[int, str, str | None]]]:
    """Replay the fleet into `count` shard stores; run the rule on a coordinator store.
    During `outage` (data times) shard 1 is down and receives nothing (its stream keeps
    the results); afterwards it gets the backlog before the next run."""
    source, first, last = fleet
    settings = load_config(None, env={}).detect
    with ExitStack() as stack:
        coordinator = stack.enter_context(Store(workdir / "coordinator.db"))
        stores = [stack.enter_context(Store(workdir / f"shard-{k}.db")) for k in range(count)]
        shards = [Switchable(store, f"shard-{k}") for k, store in enumerate(stores)]
        copied = [first] * count
        for at in runs(first, last, int(settings.interval)):
            for k, shard in enumerate(shards):
                shard.up = outage is None or k != 1 or not outage[0] <= at < outage[1]
                if shard.up:
                    copy(stores[k], source, copied[k], at, k, count)
                    copied[k] = at
            detect_sharded(coordinator, list(shards), settings, at)
        records = coordinator.conn.execute(
            "SELECT data_time, status, error FROM runs ORDER BY id"
        ).fetchall()
        return signals(coordinator), records


@pytest.mark.parametrize("count", [2, 3])
def test_sharded_rule_raises_exactly_the_single_node_signals(
    fleet: tuple[Path, int, int], reference: Any, tmp_path: Path, count: int
) -> None:
    got, records = sharded(fleet, tmp_path, count)
    assert got.keys() == reference.keys()
    for sid, (score, host, doc) in reference.items():
        assert got[sid][:2] == (score, host), sid
        assert got[sid][2] == doc, sid  # explanation, group, chain, reason: all of it
    assert {status for _, status, _ in records} <= {"ok", "learning"}


def test_a_shard_down_for_an_hour_is_scored_when_back(
    fleet: tuple[Path, int, int], reference: Any, tmp_path: Path
) -> None:
    shard_hosts = {host for _, host, _ in reference.values() if shard_of(host, 3) == 1}
    # An hour of data time in which shard 1's hosts raised a signal on one node.
    buckets = sorted(
        doc["bucket"]["start"] for _, host, doc in reference.values() if host in shard_hosts
    )
    assert buckets, "the seed should signal a host of shard 1"
    start = parse_time(buckets[-1]) - 1800
    outage = (start, start + 3600)
    got, records = sharded(fleet, tmp_path, 3, outage)
    down = [(t, err) for t, status, err in records if status == "partial"]
    assert down and all("shard-1: connection refused" in (err or "") for _, err in down)
    assert all(outage[0] <= t < outage[1] for t, _ in down)
    mine = {sid: v[:2] for sid, v in reference.items() if v[1] in shard_hosts}
    assert {sid: v[:2] for sid, v in got.items() if v[1] in shard_hosts} == mine
    # nothing lost elsewhere either (ids are the primary key: nothing is stored twice)
    assert got.keys() >= reference.keys()


def test_an_idle_shard_does_not_make_every_run_reach_back(
    fleet: tuple[Path, int, int], tmp_path: Path
) -> None:
    """A shard whose hosts stop sending (nothing new, not a backlog) is scored through
    its last data once; later runs keep to their own 45-minute window."""
    source, first, last = fleet
    settings = load_config(None, env={}).detect
    quiet_from = first + 86400
    with ExitStack() as stack:
        coordinator = stack.enter_context(Store(tmp_path / "coordinator.db"))
        stores = [stack.enter_context(Store(tmp_path / f"shard-{k}.db")) for k in range(2)]
        copy(stores[0], source, first, last + 1, 0, 2)
        copy(stores[1], source, first, quiet_from, 1, 2)
        shards = [LocalSource(store, f"shard-{k}") for k, store in enumerate(stores)]
        windows = []
        for at in runs(quiet_from - 3 * 3600, quiet_from + 6 * 3600, int(settings.interval)):
            run = detect_sharded(coordinator, list(shards), settings, at)
            windows.append(run.window_end - run.window_start)
    assert windows and set(windows[1:]) == {int(settings.lookback)}, windows


def serve_shards(
    stack: ExitStack, fleet: tuple[Path, int, int], tmp_path: Path, count: int
) -> list[ServerProcess]:
    """`count` real `rarenet serve` shards (role shard) on loopback, each holding its
    share of the fleet's hosts, running until `stack` closes."""
    source, first, last = fleet
    servers = []
    for k in range(count):
        workdir = tmp_path / f"shard-{k}"
        workdir.mkdir()
        server = ServerProcess(workdir, extra_toml=SHARD_ROLE, scoped=True)
        with Store(server.db) as store:
            copy(store, source, first, last + 1, k, count)
        servers.append(stack.enter_context(server))
    return servers


def test_shards_over_http_give_the_single_node_signals(
    fleet: tuple[Path, int, int], tmp_path: Path
) -> None:
    """Two real `rarenet serve` shards on loopback, asked over POST /v1/shard with the
    shard secret; every run over all the data, as after a backlog was consumed: the
    first run (a fresh coordinator) scores every bucket of the two days, then the runs of
    the last 8 hours as the scheduler makes them."""
    source, first, last = fleet
    settings = load_config(None, env={}).detect
    schedule = list(runs(last - 8 * 3600, last, int(settings.interval)))
    with Store(tmp_path / "single.db") as single:
        copy(single, source, first, last + 1, None, 1)
        for at in schedule:
            detect_once(single, settings, at)
        expected = signals(single)
    assert len(expected) >= 5
    with ExitStack() as stack:
        servers = serve_shards(stack, fleet, tmp_path, 2)
        remotes = [
            RemoteSource(server.url, SHARD_TOKEN, f"shard-{k}") for k, server in enumerate(servers)
        ]
        dbs = [server.db for server in servers]
        for wrong in ("wrong-token", TOKEN):  # the ingest token opens no shard
            refused = RemoteSource(remotes[0].url.removesuffix("/v1/shard"), wrong, "x")
            with pytest.raises(ShardUnavailable, match="HTTP 401"):
                refused.data_end(900)
        coordinator = stack.enter_context(Store(tmp_path / "coordinator.db"))
        for at in schedule:
            detect_sharded(coordinator, list(remotes), settings, at)
        got = signals(coordinator)
        # the suspects' questions answered over HTTP as a local shard would
        suspects = list(open_suspects(coordinator.conn, []).by_pair.values())
        assert suspects
        span, history, end = 900, int(settings.history), last // 900 * 900
        usage = [[s.host, s.name, s.path, s.since, [end - span, end]] for s in suspects]
        bounds = [["path", s.path, first, end, [[s.host, s.path, s.since]]] for s in suspects]
        kept_out = profiled = 0
        for remote, db in zip(remotes, dbs, strict=True):
            with Store(db) as shard:
                here = LocalSource(shard)
                answer = remote.suspect_usage(span, history, usage)
                assert answer == here.suspect_usage(span, history, usage)
                kept_out += sum(row[0] for rows in answer for row in rows)
                assert [list(b) for b in remote.clean_bounds(span, bounds)] == [
                    list(b) for b in here.clean_bounds(span, bounds)
                ]
                peers = [[s.host, s.path, [end - span, end]] for s in suspects]
                answer = remote.peer_uses(span, history, peers)
                assert answer == here.peer_uses(span, history, peers)
                profiled += sum(len(profiles) for profiles, _, _ in answer)
        assert profiled >= len(suspects)  # each suspect's host, profiled on its shard
        assert kept_out >= len(suspects)  # each suspect's own buckets, on its shard
    assert got == expected


def rarenet_detect(db: Path, at: int, urls: list[str]) -> subprocess.CompletedProcess[str]:
    """`rarenet detect --shard URL …` as an admin runs it, the token from the environment."""
    flags = [arg for url in urls for arg in ("--shard", url)]
    command = [sys.executable, "-m", "rarenet", "detect", "--db", str(db), "--at", str(at)]
    return subprocess.run(
        [*command, *flags, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RARENET_DETECT_SHARD_TOKEN": SHARD_TOKEN},
        check=False,
    )


def wait_for_run(db: Path, wanted: Callable[[str], bool], timeout: float = 90) -> tuple[str, str]:
    """The newest run record whose status is `wanted`, once the serve has written one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            with Store(db) as store:
                row = store.conn.execute(
                    "SELECT status, error FROM runs ORDER BY id DESC LIMIT 1"
                ).fetchone()
            if row is not None and wanted(row[0]):
                return row[0], row[1]
        time.sleep(0.5)
    raise AssertionError(f"no such run in {timeout} s")


def test_rarenet_detect_over_shard_urls_is_the_single_node_run(
    fleet: tuple[Path, int, int], reference: Any, tmp_path: Path
) -> None:
    """`rarenet detect --shard URL --shard URL` over two real serve shards (role shard:
    they never run the rule themselves): the run's signals are those of one node at the
    same data time; with one shard stopped the run says which, scores the other and exits
    normally."""
    source, first, last = fleet
    settings = load_config(None, env={}).detect
    # a first visit: a fresh store has no earlier signal that would make a return
    bucket = max(
        parse_time(doc["bucket"]["start"])
        for _, _, doc in reference.values()
        if "returning" not in doc["explanation"]
    )
    at = bucket + int(settings.bucket_span) * 2
    with Store(tmp_path / "single.db") as single:
        copy(single, source, first, last + 1, None, 1)
        one = detect_once(single, settings, at)
    expected = {doc["id"]: doc["score"] for doc in one.documents}
    assert expected, "the run should raise a signal to compare"
    with ExitStack() as stack:
        servers = serve_shards(stack, fleet, tmp_path, 2)
        urls = [server.url for server in servers]
        done = rarenet_detect(tmp_path / "coordinator.db", at, urls)
        assert done.returncode == 1, done.stderr  # new signals queued
        report = orjson.loads(done.stdout)
        assert {doc["id"]: doc["score"] for doc in report["signals"]} == expected
        assert report["run"]["shards"] == 2 and report["run"]["shards_down"] == []

        # the same as a scheduled job: a detection node's serve over the shards
        node_dir = tmp_path / "node"
        node_dir.mkdir()
        shard_list = ", ".join(f'"{url}"' for url in urls)
        node_toml = (
            f'[detect]\nshards = [{shard_list}]\nshard_token = "{SHARD_TOKEN}"\ninterval = "3s"\n'
        )
        node = stack.enter_context(ServerProcess(node_dir, extra_toml=node_toml))
        first_run = wait_for_run(node.db, lambda status: True)
        assert first_run[0] in ("ok", "learning") and "shards down" not in (first_run[1] or "")

        servers[1].stop()
        _, error = wait_for_run(node.db, lambda status: status == "partial")
        assert f"{urls[1].removeprefix('http://')}: ConnectionError" in (error or "")
        assert SHARD_TOKEN not in node.output()
        later = rarenet_detect(tmp_path / "coordinator.db", at + 900, urls)
        assert later.returncode in (0, 1), later.stderr
        run = orjson.loads(later.stdout)["run"]
        name = urls[1].removeprefix("http://")
        assert run["shards"] == 1 and [d.split(": ")[0] for d in run["shards_down"]] == [name]
        assert f"shard down, its hosts not scored in this run: {name}" in later.stderr
        assert SHARD_TOKEN not in later.stdout + later.stderr
    for server in servers:  # a shard never runs the rule on its share of the hosts
        with Store(server.db) as store:
            assert store.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
        refused = subprocess.run(
            [sys.executable, "-m", "rarenet", "detect", "--config", str(server.config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert refused.returncode == 2 and "this store is a shard" in refused.stderr


def test_explain_over_two_shards_is_explain_on_one_node_and_says_the_stored_signal(
    fleet: tuple[Path, int, int], tmp_path: Path
) -> None:
    """One evaluation (baseline/detect/evaluate.py): for every signal, `explain` at the
    run that raised it, over the shards, gives the single node's answer — and both give
    the stored signal's verdict, score and reason word for word."""
    settings = load_config(None, env={}).detect
    single_node(fleet, tmp_path / "single.db")
    sharded(fleet, tmp_path, 2)
    with ExitStack() as stack:
        single = stack.enter_context(Store(tmp_path / "single.db"))
        coordinator = stack.enter_context(Store(tmp_path / "coordinator.db"))
        shards = [
            Switchable(stack.enter_context(Store(tmp_path / f"shard-{k}.db")), f"shard-{k}")
            for k in range(2)
        ]
        stored = single.conn.execute(
            "SELECT s.id, s.host, s.path, s.name, s.score, s.document, r.window_end "
            "FROM signals AS s JOIN runs AS r ON r.id = s.run_id ORDER BY s.id"
        ).fetchall()
        assert len(stored) >= 5
        for sid, host, path, name, score, document, at in stored:
            one = why(single, settings, host, path or name, at, refresh=False)
            over = why(coordinator, settings, host, path or name, at, refresh=False, sources=shards)
            assert over.as_json() | {"signals": None} == one.as_json() | {"signals": None}, sid
            (finding,) = [f for f in one.findings if f.signal == sid]
            doc = orjson.loads(document)
            assert finding.outcome is Outcome.EXISTS, (sid, finding.sentence)
            assert (finding.score, finding.reason) == (score, doc["reason"]), sid
            assert finding.explanation == doc["explanation"], sid
