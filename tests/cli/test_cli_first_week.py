"""A fleet admin's first week (issue 32): each sharp edge found on the first day, as a
command that once did the wrong thing and now does what the rest of rarenet does."""

from __future__ import annotations

import gzip
import os
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from support.deliver_helpers import add_signal
from support.osquery_lines import event as result_event
from support.osquery_lines import line, socket_row
from support.serve_process import ServerProcess

from rarenet.baseline.cli import main
from rarenet.baseline.config import load_config
from rarenet.baseline.console import views
from rarenet.baseline.detect.maintenance import mark_replay, prune_once
from rarenet.baseline.errors import ConfigError
from rarenet.baseline.serve.store_lock import serving_alone
from rarenet.baseline.store import Store
from rarenet.baseline.units import parse_expiry

DAY = 86400


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_allow_add_takes_a_duration_as_the_console_does(tmp_path: Path) -> None:
    """`--expires 30d` was "not a time" while the console's form took `30d`."""
    db = str(tmp_path / "a.db")
    before = time.time()
    code, out, err = run("allow", "add", "--db", db, "--path", "/opt/agent/*",
                         "--expires", "30d", "--reason", "our agent", "--json")  # fmt: skip
    assert code == 0, err
    expires = orjson.loads(out)["expires_at"]
    assert before + 30 * DAY - 1 <= expires <= time.time() + 30 * DAY
    code, _, err = run("allow", "add", "--db", db, "--path", "/opt/b/*",
                       "--expires", "soon", "--reason", "b")  # fmt: skip
    assert code == 2 and "--expires" in err and "neither a duration (30d, 12h) nor a time" in err
    # one parser for both: a bare number is a unix time, never a duration in seconds
    assert parse_expiry("1767225600", now=0) == 1767225600
    assert parse_expiry("12h", now=100) == 100 + 12 * 3600
    assert parse_expiry("2026-01-01T00:00:00Z", now=0) == 1767225600
    with pytest.raises(ValueError, match="already past"):
        parse_expiry("30", now=1000)  # not 30 seconds: unix time 30, long gone
    code, _, err = run("allow", "add", "--db", db, "--path", "/opt/c/*",
                       "--expires", "2020-01-01", "--reason", "c")  # fmt: skip
    assert code == 2 and "already past" in err


def test_allow_add_needs_a_reason(tmp_path: Path) -> None:
    """An exception hides signals from everyone: it says why, on every match."""
    db = str(tmp_path / "r.db")
    code, _, err = run("allow", "add", "--db", db, "--path", "/opt/agent/*")
    assert code == 2 and "--reason" in err
    code, _, err = run("allow", "add", "--db", db, "--path", "/opt/agent/*", "--reason", "  ")
    assert code == 2 and "--reason: say why this is allowed" in err
    assert run("allow", "list", "--db", db)[1].strip() in ("", "no exceptions")


def test_signals_list_sorts_by_data_time_and_says_1_attempt(tmp_path: Path) -> None:
    """A laptop's late signal (created last, its data a day old) sorts by its data time;
    one attempt is "1 attempt"."""
    db = tmp_path / "s.db"
    with Store(db) as store:
        recent = add_signal(store, 1_000.0, host="web-001")
        late = add_signal(store, 2_000.0, host="laptop-07")
        with store.transaction() as conn:
            conn.execute("UPDATE signals SET bucket = bucket - 86400 WHERE id = ?", (late,))
            conn.execute(
                "INSERT INTO deliveries (signal_id, webhook, state, attempts, last_status) "
                "VALUES (?, 'siem', 'retrying', 1, 503)",
                (recent,),
            )
    code, out, _ = run("signals", "list", "--db", str(db), "--json")
    assert code == 0
    assert [s["id"] for s in orjson.loads(out)["signals"]] == [recent, late]
    code, out, _ = run("signals", "show", "--db", str(db), recent)
    assert code == 0 and "siem: retrying, 1 attempt, HTTP 503" in out


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ('[ingest]\ntokens = "a-long-enough-token-1234"\n', "is a string, not a list"),
        ("[store]\nretention = 30\n", "is a number without a unit (it would be seconds)"),
        ('[[webhooks]]\ntimeout = 5\nurl = "http://127.0.0.1:9/"\n', "without a unit"),
    ],
)
def test_a_setting_of_the_wrong_shape_is_refused_with_file_and_line(
    tmp_path: Path, toml: str, said: str
) -> None:
    path = tmp_path / "rarenet.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert said in str(caught.value) and f"{path}:2" in str(caught.value)
    assert "a-long-enough-token-1234" not in str(caught.value)  # a secret is never echoed


def test_a_shaped_setting_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "rarenet.toml"
    path.write_text('[store]\nretention = "30d"\nsignal_retention = 0\n')
    assert load_config(str(path), env={}).store.retention == 30 * DAY
    assert load_config(None, env={"RARENET_STORE_RETENTION": "60"}).store.retention == 60


def test_ingest_of_a_missing_file_creates_no_store(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    code, _, err = run("ingest", "--db", str(db), str(tmp_path / "nope.log"))
    assert code == 2 and "nope.log: no such file" in err
    assert not db.exists() and "created a new store" not in err


@pytest.mark.parametrize("command", ["demo", "backtest"])
def test_scratch_store_commands_do_not_offer_db(tmp_path: Path, command: str) -> None:
    """demo and backtest run on their own scratch store: --db is not in their help, and
    given anyway it is refused with a sentence saying why."""
    code, out, _ = run(command, "--help")
    assert code == 0 and "--db PATH" not in out and "--config FILE" in out
    args = [command, "--db", str(tmp_path / "x.db")]
    if command == "backtest":
        log = tmp_path / "x.log"
        log.write_text("")
        args.append(str(log))
    code, _, err = run(*args)
    assert code == 2 and "--db" in err and "scratch" in err
    assert not (tmp_path / "x.db").exists()


def test_status_says_signals_learning_and_the_last_run(tmp_path: Path) -> None:
    """`rarenet status` showed the store's rows and nothing of detection."""
    db = tmp_path / "st.db"
    with Store(db) as store:
        add_signal(store, 1_000.0, host="web-001")
        with store.transaction() as conn:
            conn.executemany(
                "INSERT INTO fleet_bucket (span, bucket, hosts) VALUES (900, ?, 3)",
                [(1768212000 + n * 900,) for n in range(7)],
            )
            conn.execute(
                "INSERT INTO runs (id, started_at, data_time, status, signals) "
                "VALUES (4, 1768300000, 1768299300, 'learning', 0)"
            )
    code, out, _ = run("status", "--db", str(db))
    assert code == 0
    assert "signals      1 (1 not acknowledged)" in out
    assert "learning     7/20 buckets of fleet history: no signal before 20" in out
    assert "last run     #4 at 2026-01-13T10:26:40Z, data time 2026-01-13T10:15:00Z" in out
    assert "learning, 0 signals" in out
    document = orjson.loads(run("status", "--db", str(db), "--json")[1])
    assert document["learning"] == {"buckets": 7, "needed": 20, "done": False}
    assert document["last_run"]["status"] == "learning" and document["signals"] == 1


@pytest.mark.slow
def test_a_second_serve_on_the_same_store_is_refused_naming_the_first(tmp_path: Path) -> None:
    """Two servers on one store would both detect, deliver and prune; the second one is
    refused with the first one's pid and address, and after a kill -9 of the first the
    store is free again (the kernel drops the lock)."""
    first = ServerProcess(tmp_path).start()
    try:
        second = subprocess.run(
            ServerProcess(tmp_path).command(), capture_output=True, timeout=60, check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("RARENET_")},
        )  # fmt: skip
        assert second.returncode == 3
        said = second.stderr.decode()
        assert f"another rarenet serve (pid {first.proc.pid}, 127.0.0.1:0) is serving" in said
        assert "give this one its own --db" in said
    finally:
        first.kill()
    with ServerProcess(tmp_path) as again:
        assert again.get("/healthz").status_code in (200, 503)


def test_packs_build_without_the_optional_event_query(tmp_path: Path) -> None:
    """Leaving out `rarenet_socket_events` meant editing a "do not edit" file."""
    out = tmp_path / "packs"
    code, _, err = run("packs", "build", "--without", "socket_events", "--out", str(out))
    assert code == 0, err
    conf = orjson.loads((out / "unusual-network-activity.conf").read_bytes())
    assert sorted(conf["queries"]) == ["rarenet_open_sockets"]
    for path in out.rglob("*"):
        if path.is_file():
            assert "socket_events" not in path.read_text(), path
    code, _, err = run("packs", "build", "--without", "open_sockets", "--out", str(out))
    assert code == 2 and "rarenet_open_sockets is required" in err
    assert "optional queries: rarenet_socket_events" in err
    code, _, err = run("packs", "build", "--without", "nope", "--out", str(out))
    assert code == 2 and "--without: no query named 'nope'" in err
    code, _, err = run("packs", "build", "--without", "socket_events")
    assert code == 2 and "add --out DIR" in err


def test_a_file_that_is_no_result_log_is_named_once(tmp_path: Path) -> None:
    """A syslog file or a pretty-printed Fleet body was "2,111 rejected", line by line;
    now the file is named once and nothing of it is quarantined. Broken JSON lines are
    still quarantined one by one (to be fixed and ingested again)."""
    db = tmp_path / "q.db"
    syslog = tmp_path / "syslog"
    syslog.write_text(
        "".join(f"Dec  5 10:00:{n % 60:02d} host cron[{n}]: job\n" for n in range(300))
    )
    pretty = tmp_path / "fleet-body.json"
    body = {"data": [{"name": "pack/x/rarenet_open_sockets", "hostIdentifier": "h"}]}
    pretty.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    broken = tmp_path / "broken.log"
    broken.write_bytes(b'{"name": "x", "columns": \n')
    bom = tmp_path / "bom.log"  # a byte order mark before JSON lines: still a result log
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"name": "y", "columns": \n')
    whole = gzip.compress(b"".join(
        line(result_event(socket_row(pid=300 + n), host="web-02", unix=1768212000 + n))
        for n in range(50)
    ))  # fmt: skip
    damaged = tmp_path / "rotated.log.gz"  # cut while being compressed
    damaged.write_bytes(whole[: len(whole) // 2])
    code, out, err = run("ingest", "--db", str(db), str(syslog), str(pretty), str(broken),
                         str(bom), str(damaged))  # fmt: skip
    assert code == 2 and f"{damaged}" in err  # the damaged file is named, the run goes on
    assert f"{syslog}: not an osquery result log: none of its first 20 non-empty lines" in err
    assert f"{pretty}: not an osquery result log: one JSON document spread over" in err
    assert "jq -c" in err
    assert "2 rejected" in out  # only the two broken JSON lines
    listed = orjson.loads(run("quarantine", "list", "--db", str(db), "--json")[1])
    assert sorted(row["source"] for row in listed) == sorted([str(broken.resolve()),
                                                              str(bom.resolve())])  # fmt: skip


def test_quarantine_clear_by_source_or_all_and_audited(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(b'{"broken": \n' * 3)
    second.write_bytes(b'{"also": \n' * 2)
    run("ingest", "--db", str(db), str(first), str(second))
    code, _, err = run("quarantine", "clear", "--db", str(db))
    assert code == 2 and "--source FILE or --all" in err
    code, out, _ = run("quarantine", "clear", "--db", str(db), "--source", str(first.resolve()))
    assert code == 0 and out.strip() == f"cleared 3 quarantined lines of {first.resolve()}"
    remaining = orjson.loads(run("quarantine", "list", "--db", str(db), "--json")[1])
    assert {row["source"] for row in remaining} == {str(second.resolve())}
    code, out, _ = run("quarantine", "clear", "--db", str(db), "--all", "--json")
    assert code == 0 and orjson.loads(out)["removed"] == 2
    assert orjson.loads(run("quarantine", "list", "--db", str(db), "--json")[1]) == []
    audit = run("audit", "list", "--db", str(db))[1]
    assert audit.count("quarantine.clear") == 2


def test_a_live_store_is_pruned_from_now_and_a_replay_from_its_newest_data(
    tmp_path: Path,
) -> None:
    """The same January observations: pruned at once from a live store (30 days of
    retention from now), kept in a store marked as a replay (retention counted back
    from its newest data time)."""
    log = tmp_path / "jan.log"
    jan = 1768212000  # 2026-01-12
    log.write_bytes(b"".join(
        line(result_event(socket_row(pid=100 + n), host="web-01", unix=jan + n * 60))
        for n in range(10)
    ))  # fmt: skip
    config = load_config(None, env={})
    for name, replay in (("live.db", False), ("replay.db", True)):
        db = tmp_path / name
        assert run("ingest", "--db", str(db), str(log))[0] == 0
        with Store(db) as store:
            if replay:
                mark_replay(store, "rarenet demo")
            pruned = prune_once(store, config, now=jan + 400 * DAY)
            assert pruned.observations == (0 if replay else 10), name


def test_triage_from_the_shell_ack_assign_close_comment(tmp_path: Path) -> None:
    """`signals ack|assign|close|comment` over several ids at once; the state shows in
    `list`, `show` and the JSON; a closed signal stays closed; closing as a false positive
    releases the binary (the acknowledgement's verdict the rule reads) and points at
    `allow add`; every change is in the audit trail."""
    db = tmp_path / "t.db"
    with Store(db) as store:
        a, b, c = (add_signal(store, 1000.0 + n, host=f"web-{n:03d}") for n in range(3))
    assert run("users", "add", "ann", "--role", "analyst", "--db", str(db), "--no-password")[0] == 0
    code, out, _ = run("signals", "ack", "--db", str(db), a[:8], b)
    assert code == 0 and out.splitlines()[0] == "acknowledged 2 signals"
    code, out, _ = run("signals", "ack", "--db", str(db), a, "--json")
    assert orjson.loads(out) == {
        "changed": [],
        "unchanged": [{"id": a, "why": "already acknowledged"}],
    }
    code, _, err = run("signals", "assign", "--db", str(db), c, "--to", "bob")
    assert code == 2 and "no console user 'bob'" in err and "users: ann" in err
    assert run("signals", "assign", "--db", str(db), b, c, "--to", "ann")[0] == 0
    code, out, _ = run("signals", "close", "--db", str(db), a, b, "--as", "false-positive",
                       "--comment", "the nightly backup")  # fmt: skip
    assert code == 0 and "closed as false-positive: 2 signals" in out and "allow add" in out
    code, out, _ = run("signals", "close", "--db", str(db), a, "--as", "true-positive")
    assert "0 signals" in out and "unchanged, already closed: false positive" in out
    assert run("signals", "comment", "--db", str(db), c, "looking at it")[0] == 0
    listed = {
        s["id"]: s["triage"]
        for s in orjson.loads(run("signals", "list", "--db", str(db), "--json")[1])["signals"]
    }
    assert listed[a]["state"] == "closed" and listed[a]["resolution"] == "false_positive"
    assert listed[b]["assignee"] == "ann" and listed[b]["state"] == "closed"
    assert listed[c] | {"updated_at": 0} == {"state": "in_progress", "resolution": None,
        "assignee": "ann", "updated_at": 0, "updated_by": listed[c]["updated_by"], "comments": 1}  # fmt: skip
    text = run("signals", "list", "--db", str(db))[1]
    assert "closed: false positive" in text and "in progress (ann)" in text
    shown = run("signals", "show", "--db", str(db), b)[1]
    assert "triage   closed: false positive" in shown and ": the nightly backup" in shown
    with Store(db) as store:
        verdicts = dict(store.conn.execute("SELECT signal_id, verdict FROM signal_acks"))
    assert verdicts == {a: "benign", b: "benign", c: None}
    audit = run("audit", "list", "--db", str(db))[1]
    assert (
        audit.count("signal.close") == 2 and "signal.assign" in audit and "signal.comment" in audit
    )
    code, _, err = run("signals", "close", "--db", str(db), "feedfacefeed", "--as", "true-positive")
    assert code == 2 and "no signal" in err


def test_the_serve_lock_makes_its_folder_and_bulk_acts_only_on_what_was_shown(
    tmp_path: Path,
) -> None:
    """`serve --db new/dir/x.db` makes the folder as the store would; a bulk action
    over a group leaves a signal that joined it after the list was shown."""
    with serving_alone(str(tmp_path / "new" / "dir" / "x.db"), "127.0.0.1:0"):
        assert (tmp_path / "new" / "dir" / "x.db.serve.lock").exists()
    with Store(tmp_path / "b.db") as store:
        seen = add_signal(store, 1000.0, host="web-001")
        later = add_signal(store, 3000.0, host="web-002")
        with store.transaction() as conn:
            conn.execute("UPDATE signals SET group_id = ?", (seen,))
        assert views.group_signal_ids(store, [seen], 2000.0) == [seen]
        assert sorted(views.group_signal_ids(store, [seen], 3000.0)) == sorted([seen, later])
