"""The rule on a small hand-built fleet: what fires, what stays quiet, and why."""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner
from support.hand_fleet import (
    ATTACK_AT,
    BASH_SHELL,
    BEACON,
    END,
    HOSTS,
    MASQUERADE,
    ROLLOUT,
    RUN_AT,
    SPAN,
    START,
    WEB,
    routine_lines,
)
from support.osquery_lines import T0, socket_line
from support.stores import ingest_lines

from rarenet.baseline.access.audit import list_audit
from rarenet.baseline.cli import main
from rarenet.baseline.config import Config, load_config
from rarenet.baseline.console import views
from rarenet.baseline.detect.exceptions import Exception_, add_exception, broad_exceptions
from rarenet.baseline.detect.maintenance import prune_once
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.detect.signal import signal_id
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.store import Store


def signalled(run_docs: list[dict[str, object]]) -> dict[tuple[str, str], dict[str, object]]:
    return {(d["host"]["name"], d["process"]["executable"]): d for d in run_docs}  # type: ignore[index]


def test_attacks_fire_and_routine_stays_quiet(hand_fleet_store: Store, config: Config) -> None:
    run = detect_once(hand_fleet_store, config.detect, RUN_AT)
    found = signalled(run.documents)
    rollout = [key for key in found if key[1] == "/opt/acme/bin/acme-agent"]
    assert len(rollout) == 1, "the rollout of acme-agent to 10 hosts at once pages once"
    assert set(found) - set(rollout) == {
        ("web-05", "/tmp/.x/beacon"),
        ("web-07", "/usr/bin/bash"),
        ("web-09", "/var/tmp/.cache/curl"),
    }, "nginx/curl/apt stay quiet"
    agent = found[rollout[0]]
    assert agent["kind"] == "rollout" and agent["score"] == 60.0
    assert "/opt/acme/bin/acme-agent on 10 hosts within a day, 10 in this bucket" in str(
        agent["reason"]
    )
    assert run.suppressed == 9  # the other nine hosts are counted on the rollout's signal
    assert hand_fleet_store.conn.execute(
        "SELECT suppressed_count FROM signals WHERE id = ?", (agent["id"],)
    ).fetchone() == (9,)
    beacon = found[("web-05", "/tmp/.x/beacon")]
    assert beacon["score"] == 100.0 and beacon["explanation"]["decided_by"] == "path"  # type: ignore[index]
    assert beacon["explanation"]["path"]["host_buckets"] == 0  # type: ignore[index]
    assert beacon["explanation"]["fleet"]["hosts"] == len(HOSTS)  # type: ignore[index]
    assert beacon["destination"] == {"ip": "203.0.113.99", "port": 8443, "kind": "external"}
    assert beacon["severity"] == "low" and beacon["risk_score"] == 21
    assert {t["tactic"]["id"] for t in beacon["threat"]} == {
        "TA0011",
        "TA0010",
        "TA0008",
        "TA0003",
        "TA0005",
    }  # type: ignore[index]
    shell = found[("web-07", "/usr/bin/bash")]
    assert shell["score"] == 60.0 and shell["explanation"]["decided_by"] == "host novelty"  # type: ignore[index]
    masquerade = found[("web-09", "/var/tmp/.cache/curl")]
    assert "masquerade" in masquerade["reason"]  # type: ignore[operator]
    assert run.signals == 4 and run.candidates > len(HOSTS)


def test_overlapping_runs_never_duplicate_and_repeats_are_suppressed(
    hand_fleet_store: Store, config: Config
) -> None:
    first = detect_once(hand_fleet_store, config.detect, RUN_AT)
    again = detect_once(hand_fleet_store, config.detect, RUN_AT)
    later = detect_once(hand_fleet_store, config.detect, RUN_AT + SPAN)  # overlapping look-back
    assert first.signals == 4 and again.signals == 0 and later.signals == 0
    assert hand_fleet_store.conn.execute("SELECT count(*) FROM signals").fetchone()[0] == 4
    sid = signal_id("web-05", "beacon", "/tmp/.x/beacon", ATTACK_AT - ATTACK_AT % SPAN)
    assert hand_fleet_store.conn.execute(
        "SELECT initial_score FROM signals WHERE id = ?", (sid,)
    ).fetchone() == (100.0,)


def test_the_same_binary_later_is_suppressed_and_counted(
    hand_fleet_store: Store, config: Config, tmp_path: Path
) -> None:
    """Within suppress_for, a repeat of a signalled (host, executable) is counted on the
    first signal instead of paging again (threshold lowered: a repeat is less rare)."""
    settings = replace(config.detect, threshold=30)
    detect_once(hand_fleet_store, settings, RUN_AT)
    again = socket_line(
        "web-05",
        RUN_AT + 100,
        pid=6667,
        name="beacon",
        path="/tmp/.x/beacon",
        remote_address="203.0.113.99",
        remote_port=8443,
    )
    ingest_lines(hand_fleet_store, [again], tmp_path / "more.log")
    run = detect_once(hand_fleet_store, settings, RUN_AT + 3 * SPAN)
    assert run.signals == 0 and run.suppressed == 1
    assert hand_fleet_store.conn.execute(
        "SELECT suppressed_count FROM signals WHERE path = '/tmp/.x/beacon'"
    ).fetchone() == (1,)


def test_exceptions_are_counted_not_silently_dropped(
    hand_fleet_store: Store, config: Config
) -> None:
    add_exception(
        hand_fleet_store, Exception_(0, path_glob="/tmp/.x/*", reason="red team exercise")
    )
    add_exception(hand_fleet_store, Exception_(0, host="web-0?", cidr="198.51.100.0/24"))
    run = detect_once(hand_fleet_store, config.detect, RUN_AT)
    assert set(signalled(run.documents)) == {
        ("web-07", "/usr/bin/bash"),
        ("web-10", "/opt/acme/bin/acme-agent"),  # the rollout's one signal
    }
    assert run.excepted == 2
    assert [
        r[0] for r in hand_fleet_store.conn.execute("SELECT matched FROM exceptions ORDER BY id")
    ] == [
        1,
        1,
    ]


def test_expired_exception_no_longer_applies(hand_fleet_store: Store, config: Config) -> None:
    add_exception(hand_fleet_store, Exception_(0, path_glob="/tmp/.x/*", expires_at=ATTACK_AT - 60))
    run = detect_once(hand_fleet_store, config.detect, RUN_AT)
    assert ("web-05", "/tmp/.x/beacon") in signalled(run.documents)


def test_threshold_and_max_signals(hand_fleet_store: Store, config: Config) -> None:
    strict = replace(config.detect, threshold=90, max_signals=1)
    run = detect_once(hand_fleet_store, strict, RUN_AT)
    assert run.signals == 1 and run.truncated == 1  # beacon and masquerade ≥ 90, bash 60 below
    assert run.documents[0]["score"] == 100.0


def test_warm_up_blocks_signals_and_says_so(tmp_path: Path, config: Config) -> None:
    early_beacon = BEACON.replace(str(ATTACK_AT + 10).encode(), str(START + 12 * SPAN + 5).encode())
    with Store(tmp_path / "young.db") as store:
        ingest_lines(
            store, [*routine_lines()[: len(HOSTS) * 12], early_beacon], tmp_path / "young.log"
        )
        run = detect_once(store, config.detect, START + 14 * SPAN)
    assert (
        run.signals == 0
        and run.learning.startswith("learning: ")
        and run.learning.endswith("/20 buckets")
    )


def test_ingestion_order_is_irrelevant(tmp_path: Path, config: Config) -> None:
    lines = [*routine_lines(), BEACON, BASH_SHELL, MASQUERADE, *ROLLOUT]
    random.Random(3).shuffle(lines)
    with Store(tmp_path / "shuffled.db") as store:
        ingest_lines(store, lines, tmp_path / "shuffled.log")
        run = detect_once(store, config.detect, RUN_AT)
    assert {(d["id"], d["score"]) for d in run.documents} == {
        (signal_id(h, n, p, ATTACK_AT - ATTACK_AT % SPAN), s)
        for h, n, p, s in [
            ("web-05", "beacon", "/tmp/.x/beacon", 100.0),
            ("web-07", "bash", "/usr/bin/bash", 60.0),
            ("web-09", "curl", "/var/tmp/.cache/curl", 100.0),
            ("web-10", "acme-agent", "/opt/acme/bin/acme-agent", 60.0),
        ]
    }


def test_prune_once_keeps_what_the_baseline_needs(hand_fleet_store: Store, config: Config) -> None:
    detect_once(hand_fleet_store, config.detect, RUN_AT)
    short = replace(config, store=replace(config.store, retention=86400.0))
    pruned = prune_once(hand_fleet_store, short, now=END)
    assert pruned.observations > 0
    assert (
        hand_fleet_store.conn.execute("SELECT min(time) FROM observations").fetchone()[0]
        >= END - 86400
    )


def test_detect_command_json_and_exit_code(hand_fleet_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    shutil.copy(hand_fleet_db, db)
    result = CliRunner().invoke(main, ["detect", "--db", str(db), "--at", str(RUN_AT), "--json"])
    assert result.exit_code == 1, result.output  # 1: new signals were queued
    document = orjson.loads(result.stdout)
    assert document["run"]["signals"] == 4 and len(document["signals"]) == 4
    again = CliRunner().invoke(main, ["detect", "--db", str(db), "--at", str(RUN_AT)])
    assert again.exit_code == 0 and "0 signals" in again.stdout


def test_allow_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "allow.db")
    runner = CliRunner()
    added = runner.invoke(
        main,
        ["allow", "add", "--db", db, "--path", "/opt/agent/*", "--reason", "our agent", "--json"],
    )
    assert added.exit_code == 0, added.output
    document = orjson.loads(added.stdout)
    assert document["id"] == 1 and document["broad"] is False
    assert document["preview"]["signals"] == 0  # an empty store: nothing it would hide
    assert 89 * 86400 < document["expires_at"] - time.time() <= 90 * 86400  # the default cap
    bad = runner.invoke(main, ["allow", "add", "--db", db, "--cidr", "not-a-net", "--reason", "x"])
    assert bad.exit_code == 2 and "--cidr: 'not-a-net' is not an IP network" in bad.stderr
    empty = runner.invoke(main, ["allow", "add", "--db", db, "--reason", "x"])
    assert empty.exit_code == 2 and "needs at least one of" in empty.stderr
    listed = runner.invoke(main, ["allow", "list", "--db", db])
    assert "path_glob=/opt/agent/*" in listed.stdout and "our agent" in listed.stdout
    assert runner.invoke(main, ["allow", "remove", "--db", db, "1"]).exit_code == 0
    assert runner.invoke(main, ["allow", "remove", "--db", db, "1"]).exit_code == 1


def test_baseline_show_and_export(hand_fleet_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    shutil.copy(hand_fleet_db, db)
    runner = CliRunner()
    shown = runner.invoke(main, ["baseline", "show", "--db", str(db), "nginx"])
    assert shown.exit_code == 0 and "/usr/sbin/nginx" in shown.stdout
    out = tmp_path / "snapshot.json"
    exported = runner.invoke(
        main, ["baseline", "export", "--db", str(db), "--host", "web-05", "--out", str(out)]
    )
    assert exported.exit_code == 0
    snapshot = orjson.loads(out.read_bytes())
    assert snapshot["version"] == 1 and snapshot["host"] == "web-05" and snapshot["fleet"]["mature"]
    nginx = next(e for e in snapshot["entries"] if e["path"] == "/usr/sbin/nginx")
    assert (
        nginx["hosts"] == len(WEB) and nginx["host_buckets_on_host"] > 0 and nginx["rarity"] == 0.0
    )


def test_a_compressed_drill_with_one_second_buckets(tmp_path: Path) -> None:
    """Any bucket span ≥ 1 s works: 1-second buckets, a 5-minute history."""
    config = load_config(
        None,
        env={
            "RARENET_DETECT_BUCKET_SPAN": "1s",
            "RARENET_DETECT_LOOKBACK": "3s",
            "RARENET_DETECT_INTERVAL": "1s",
            "RARENET_DETECT_HISTORY": "5m",
        },
    )
    lines = [
        socket_line(f"h{i % 5}", T0 + i // 5, pid=100 + i, name="nginx", path="/usr/sbin/nginx")
        for i in range(5 * 400)
    ]
    lines.append(socket_line("h2", T0 + 399, pid=9, name="nc", path="/usr/bin/nc.openbsd"))
    log = tmp_path / "drill.log"
    log.write_bytes(b"".join(lines))
    with Store(tmp_path / "drill.db") as store:
        Ingester(store, config).ingest([str(log)])
        run = detect_once(store, config.detect, T0 + 401)
    assert [(d["host"]["name"], d["process"]["executable"], d["score"]) for d in run.documents] == [
        ("h2", "/usr/bin/nc.openbsd", 80.0)  # never seen, from a package-managed path
    ]
    assert run.window_end - run.window_start == 3


def test_a_broad_exception_is_refused_with_what_it_would_hide(
    hand_fleet_db: Path, tmp_path: Path
) -> None:
    db = tmp_path / "broad.db"
    shutil.copy(hand_fleet_db, db)
    with Store(db) as opened:
        run = detect_once(opened, load_config(None, env={}).detect, RUN_AT)
    as_web = [d for d in run.documents if d["user"]["name"] == "www-data"]  # type: ignore[index]
    assert as_web, "the attacks run as www-data"
    runner = CliRunner()

    def allow(*args: str) -> Any:
        return runner.invoke(main, ["allow", "add", "--db", str(db), *args])

    user_only = runner.invoke(
        main, ["allow", "add", "--db", str(db), "--user", "www-data", "--reason", "db"]
    )  # fmt: skip
    assert user_only.exit_code == 2
    assert f"would have hidden {len(as_web)} signal" in user_only.stderr
    assert "--broad" in user_only.stderr and "/tmp/.x/beacon" in user_only.stderr
    everything = allow("--path", "*", "--reason", "silence")
    assert everything.exit_code == 2 and "refused a broad exception" in everything.stderr
    system = allow("--path", "/usr/bin/*", "--reason", "all of /usr/bin")
    assert system.exit_code == 2  # bash, perl, nc live there
    narrow = runner.invoke(
        main, ["allow", "add", "--db", str(db), "--path", "/tmp/.x/beacon", "--reason", "lab",
               "--json"],
    )  # fmt: skip
    assert narrow.exit_code == 0, narrow.output
    assert orjson.loads(narrow.stdout)["preview"]["signals"] == 1
    too_long = allow("--path", "/opt/x/agent", "--expires", "2100-01-01T00:00:00Z", "--reason", "x")
    assert too_long.exit_code == 2 and "exception_max_age" in too_long.stderr
    confirmed = allow("--user", "www-data", "--reason", "db", "--broad")
    assert confirmed.exit_code == 0 and "flagged on Health" in confirmed.stderr
    listed = runner.invoke(main, ["allow", "list", "--db", str(db)])
    assert "BROAD" in listed.stdout and "by cli:" in listed.stdout
    with Store(db) as opened:
        assert len(broad_exceptions(opened)) == 1
        page = views.health_page(opened, SPAN, 20)
        assert [e["user"] for e in page.broad_exceptions] == ["www-data"]
        assert page.excepted.candidates >= 1
        actions = [e.action for e in list_audit(opened)]
        assert actions.count("exception.add") == 2  # the narrow one and the confirmed one


def test_signals_older_than_their_retention_go_with_deliveries_acks_and_audit(
    hand_fleet_store: Store, config: Config
) -> None:
    run = detect_once(hand_fleet_store, config.detect, RUN_AT)
    assert run.signals == 4
    old, young = (
        sorted(d["id"] for d in run.documents)[:2],
        sorted(d["id"] for d in run.documents)[2:],
    )
    now = time.time()
    with hand_fleet_store.transaction() as conn:
        conn.executemany(
            "UPDATE signals SET created_at = ? WHERE id = ?", [(now - 400 * 86400, s) for s in old]
        )
        for sid in run.documents:
            conn.execute(
                "INSERT INTO deliveries (signal_id, webhook, state, attempts) VALUES (?, 'siem', 'delivered', 1)",
                (sid["id"],),
            )
    for sid in [*old, *young]:
        assert views.acknowledge(hand_fleet_store, sid, now, verdict="attack")
    pruned = prune_once(hand_fleet_store, config, now=END)
    assert pruned.signals == 2
    left = {sid for (sid,) in hand_fleet_store.conn.execute("SELECT id FROM signals")}
    assert left == set(young)
    for table, column in (("deliveries", "signal_id"), ("signal_acks", "signal_id")):
        kept = {s for (s,) in hand_fleet_store.conn.execute(f"SELECT {column} FROM {table}")}
        assert kept == set(young), table
    targets = {entry.target for entry in list_audit(hand_fleet_store, limit=100)}
    assert not any(f"signal:{s}" in targets for s in old)
    assert all(f"signal:{s}" in targets for s in young)
    summary = set(
        hand_fleet_store.conn.execute(
            "SELECT group_id, signals, latest, max_score FROM signal_group"
        )
    )
    truth = set(
        hand_fleet_store.conn.execute(
            "SELECT coalesce(group_id, id), count(*), max(created_at), max(score) FROM signals "
            "GROUP BY 1"
        )
    )
    assert summary == truth  # the triggers keep the console's per-group summary
    hosts = set(hand_fleet_store.conn.execute("SELECT group_id, host FROM signal_group_host"))
    assert hosts == set(
        hand_fleet_store.conn.execute("SELECT DISTINCT coalesce(group_id, id), host FROM signals")
    )
    assert set(hand_fleet_store.conn.execute("SELECT host, signals FROM signal_host")) == set(
        hand_fleet_store.conn.execute("SELECT host, count(*) FROM signals GROUP BY host")
    )
    assert set(
        hand_fleet_store.conn.execute("SELECT path, name, signals FROM signal_binary")
    ) == set(
        hand_fleet_store.conn.execute(
            "SELECT path, name, count(*) FROM signals GROUP BY path, name"
        )
    )
    forever = replace(config, store=replace(config.store, signal_retention=0.0))
    assert prune_once(hand_fleet_store, forever, now=END).signals == 0
