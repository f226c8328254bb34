"""The CLI's sharp edges (issue 14): a closed pipe, a mistyped --db, short id prefixes,
old data, unknown binaries, and --json on every reporting command."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from support.hand_fleet import RUN_AT
from support.osquery_lines import event as result_event
from support.osquery_lines import line, socket_row

from rarenet.baseline.cli import main
from rarenet.baseline.config import load_config
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.store import Store

RARENET = [sys.executable, "-m", "rarenet"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def signalled_db(hand_fleet_db: Path, tmp_path: Path) -> Path:
    """The hand-built fleet of test_detect after one run that raised its signals."""
    db = tmp_path / "s.db"
    shutil.copy(hand_fleet_db, db)
    with Store(db) as store:
        assert detect_once(store, load_config(None, env={}).detect, RUN_AT).signals >= 3
    return db


def test_a_closed_pipe_exits_0_quietly(signalled_db: Path) -> None:
    """`rarenet signals list | head -0`: the reader is gone before the first write."""
    for args in (["signals", "list"], ["baseline", "show"], ["status"]):
        read, write = os.pipe()
        os.close(read)  # nobody will ever read: the first write fails with EPIPE
        proc = subprocess.run(
            [*RARENET, "--db", str(signalled_db), *args],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
        os.close(write)
        assert (proc.returncode, proc.stderr) == (0, b""), (args, proc.stderr)


def test_head_reads_one_line_and_the_command_exits_0(signalled_db: Path) -> None:
    pipeline = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {' '.join(RARENET)} --db {signalled_db} "
         "signals list | head -1"],
        capture_output=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert pipeline.returncode == 0 and pipeline.stderr == b""
    assert pipeline.stdout.startswith(b"ID ")


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["signals", "list"],
        ["baseline", "show"],
        ["explain", "web-01", "/usr/bin/bash"],
        ["detect"],
        ["quarantine", "list"],
        ["allow", "list"],
    ],
)
def test_a_mistyped_db_is_refused_and_nothing_is_created(tmp_path: Path, args: list[str]) -> None:
    typo = tmp_path / "nope" / "rarenet.dbb"
    code, out, err = run(*args, "--db", str(typo))
    assert code == 2 and out == ""
    assert f"no store at {typo}" in err and "rarenet ingest" in err
    assert not typo.parent.exists()


def test_commands_that_fill_a_store_create_it_and_say_so(tmp_path: Path) -> None:
    log = tmp_path / "one.log"
    log.write_bytes(line(result_event(socket_row(), host="web-01", unix=RUN_AT)))
    db = tmp_path / "new" / "rarenet.db"
    code, _, err = run("ingest", "--db", str(db), str(log))
    assert code == 0 and f"created a new store at {db}" in err and db.exists()
    code, _, err = run("ingest", "--db", str(db), str(log))
    assert code == 0 and "created" not in err  # the second time it exists
    other = tmp_path / "allow.db"
    code, _, err = run("allow", "add", "--db", str(other), "--name", "nginx", "--reason", "web")
    assert code == 0 and "created a new store" in err


def test_a_short_id_prefix_says_how_long_a_prefix_must_be(signalled_db: Path) -> None:
    with Store(signalled_db) as store:
        sid = store.conn.execute("SELECT id FROM signals ORDER BY id LIMIT 1").fetchone()[0]
    code, _, err = run("signals", "show", "--db", str(signalled_db), sid[:4])
    assert code == 2 and "at least 6 characters" in err
    code, out, _ = run("signals", "show", "--db", str(signalled_db), sid[:8])
    assert code == 0 and f"signal   {sid}" in out


def test_signals_show_and_list_give_the_context(signalled_db: Path) -> None:
    code, out, _ = run("signals", "list", "--db", str(signalled_db))
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == [
        "ID",
        "DATA",
        "TIME",
        "SCORE",
        "HOST",
        "BINARY",
        "TRIAGE",
        "DELIVERY",
    ]
    beacon = next(row for row in rows if "/tmp/.x/beacon" in row)
    bucket = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((RUN_AT - 2 * 900) // 900 * 900))
    assert bucket in beacon  # the data time of the signal, not when the run happened
    sid = beacon.split()[0]
    code, out, _ = run("signals", "show", "--db", str(signalled_db), sid)
    assert code == 0
    assert "to       203.0.113.99:8443" in out and "user     www-data" in out
    assert "cmdline  /tmp/.x/beacon" in out and "parent   php-fpm8.2 (pid 4000)" in out


def test_detect_on_old_data_says_where_the_data_ends(signalled_db: Path) -> None:
    code, _, err = run("detect", "--db", str(signalled_db))
    assert code == 0
    assert "the data ends at" in err and "rarenet detect --at" in err and "backtest" in err


def test_baseline_show_an_unknown_binary_and_the_rarity_scale(signalled_db: Path) -> None:
    code, out, err = run("baseline", "show", "--db", str(signalled_db), "nosuch")
    assert code == 1 and out == "" and "no binary named 'nosuch'" in err
    code, out, _ = run("baseline", "show", "--db", str(signalled_db), "beacon")
    row = next(r for r in out.splitlines() if "/tmp/.x/beacon" in r)
    code, doc, _ = run("baseline", "show", "--db", str(signalled_db), "beacon", "--json")
    rarity = orjson.loads(doc)["entries"][0]["rarity"]
    assert code == 0 and 0 < rarity < 1  # JSON: the snapshot's 0-1
    assert row.split()[0] == f"{100 * rarity:.0f}"  # text: 0-100, as scores are


def test_json_on_allow_remove_and_quarantine_show(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    assert run("allow", "add", "--db", str(db), "--name", "nginx", "--reason", "web")[0] == 0
    code, out, _ = run("allow", "remove", "--db", str(db), "1", "--json")
    assert code == 0 and orjson.loads(out) == {"id": 1, "removed": True}
    code, out, _ = run("allow", "remove", "--db", str(db), "1", "--json")
    assert code == 1 and orjson.loads(out) == {"id": 1, "removed": False}
    bad = tmp_path / "bad.log"
    bad.write_bytes(b'{"name": \xff not json\n')
    assert run("ingest", "--db", str(db), str(bad))[0] == 1
    code, out, _ = run("quarantine", "show", "--db", str(db), "1", "--json")
    shown = orjson.loads(out)
    assert code == 0 and shown["source"] == str(bad) and shown["line"] == 1
    assert base64.b64decode(shown["raw_base64"]) == b'{"name": \xff not json'
    assert "\ufffd" in shown["raw"]


@pytest.mark.parametrize(
    "args",
    [
        ["detect", "--at", "-99999999999999"],
        ["explain", "web-1", "bash", "--at", "99999999999999999999999"],
        ["report", "--out", "r.html", "--since", "99999999999999999999999"],
        ["signals", "list", "--since", "-1"],
    ],
    ids=["detect", "explain", "report", "signals"],
)
def test_a_time_out_of_range_is_bad_input_naming_the_range(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "fleet.db"
    log = tmp_path / "one.log"
    log.write_bytes(
        b'{"name":"rarenet_open_sockets","hostIdentifier":"web-1","unixTime":1767571260,'
        b'"columns":{"pid":"1","name":"nginx","path":"/usr/sbin/nginx","remote_address":'
        b'"192.0.2.1","remote_port":"443"},"action":"added"}\n'
    )
    rarenet = [sys.executable, "-m", "rarenet"]
    subprocess.run([*rarenet, "ingest", "--db", str(db), str(log)], check=True, capture_output=True)
    done = subprocess.run(
        [*rarenet, *args, "--db", str(db)], capture_output=True, text=True, cwd=tmp_path,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "outside the times rarenet accepts: 1970-01-01T00:00:00Z" in done.stderr, done.stderr
    assert "internal error" not in done.stderr


def test_a_port_in_use_is_a_bind_error_naming_the_address(tmp_path: Path) -> None:
    """`rarenet serve` on a port another process listens on: exit 3, the address and the
    hint, raised as a BindError (not a store error: the store is fine)."""
    from rarenet.baseline.errors import BindError
    from rarenet.baseline.serve.server import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        toml = tmp_path / "rarenet.toml"
        toml.write_text(
            f'[store]\npath = "{tmp_path / "r.db"}"\n[server]\nhost = "127.0.0.1"\nport = {port}\n'
        )
        with pytest.raises(BindError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(load_config(toml, env={}))
        done = subprocess.run(
            [sys.executable, "-m", "rarenet", "--config", str(toml), "serve"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "is another rarenet serve running?" in done.stderr
