"""Live: a real bash reverse shell whose child holds the socket, to a listener in a
network namespace this test creates, collected from /proc into a store with a mature
baseline — signalled naming bash, and grouped when a second host does the same."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.hand_fleet import ATTACK_AT, SPAN
from support.netns import (
    Child,
    VethNamespace,
    children,
    holder_argv,
)

from rarenet.baseline.collect import Collector
from rarenet.baseline.config import load_config
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.detect.why import why
from rarenet.baseline.ingest.normalise import Normaliser
from rarenet.baseline.store import Store

PORT = 4444
WAIT = 10.0


@pytest.fixture
def listener(veth_ns: VethNamespace) -> Iterator[Child]:
    with children() as kids:
        spec = {"sockets": [{"op": "listen", "host": veth_ns.ns_v4, "port": PORT}]}
        child = Child(veth_ns.exec_argv(holder_argv(spec)))
        kids.append(child)
        child.line()
        yield child


def _children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@pytest.fixture
def reverse_shell(veth_ns: VethNamespace, listener: Child) -> Iterator[tuple[int, int]]:
    """bash opens fd 3 to the listener, then runs sleep (which inherits fd 3)."""
    script = f"exec 3<>/dev/tcp/{veth_ns.ns_v4}/{PORT}; sleep 60; true"
    shell = subprocess.Popen(
        [shutil.which("bash") or "/bin/bash", "-c", script], start_new_session=True
    )
    try:
        deadline = time.monotonic() + WAIT
        while not _children_of(shell.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (sleeper,) = _children_of(shell.pid)
        yield shell.pid, sleeper
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=WAIT)


def test_a_childs_socket_is_signalled_naming_bash_and_grouped_across_hosts(
    hand_fleet_db: Path,
    tmp_path: Path,
    reverse_shell: tuple[int, int],
) -> None:
    bash_pid, sleep_pid = reverse_shell
    db = tmp_path / "live.db"
    shutil.copy(hand_fleet_db, db)
    config = load_config(None, env={})
    first_at, second_at = ATTACK_AT + 60, ATTACK_AT + 1800
    with Store(db) as store:
        Collector(store, Normaliser(), host="web-03").collect_once(now=first_at)
        Collector(store, Normaliser(), host="web-04").collect_once(now=second_at)
        held = store.conn.execute(
            "SELECT DISTINCT host, pid, name, path, parent_pid, parent_name FROM observations "
            "WHERE remote_port = ? ORDER BY host, pid",
            (PORT,),
        ).fetchall()
        sleep_rows = [row for row in held if row[1] == sleep_pid]
        assert [row[0] for row in sleep_rows] == ["web-03", "web-04"], held
        sleep_path = sleep_rows[0][3]
        assert sleep_rows[0][4:] == (bash_pid, "bash")
        run_at = second_at - second_at % SPAN + 2 * SPAN
        first_run = detect_once(store, config.detect, first_at - first_at % SPAN + 2 * SPAN)
        (leader,) = [d for d in first_run.documents if d["process"]["executable"] == sleep_path]
        assert leader["host"]["name"] == "web-03"
        assert "held by a child of the shell bash" in leader["reason"]
        assert leader["process"]["parent"]["name"] == "bash"
        assert leader["process"]["parent"]["pid"] == bash_pid
        second_run = detect_once(store, config.detect, run_at)
        (second,) = [d for d in second_run.documents if d["process"]["executable"] == sleep_path]
        assert second["host"]["name"] == "web-04" and second["group"] == leader["id"]
        answer = why(store, config.detect, "web-04", sleep_path, run_at)
        finding = next(f for f in answer.findings if f.signal == second["id"])
        assert finding.group == leader["id"]
        assert [m["host"] for m in finding.others] == ["web-03"]
        assert "held by a child of the shell bash" in finding.reason


def test_a_process_that_reconnects_after_its_signal_is_signalled_again_and_grouped(
    hand_fleet_db: Path,
    tmp_path: Path,
    veth_ns: VethNamespace,
    listener: Child,
) -> None:
    """A real process connects out and is signalled; it goes away; a day and more later
    (past suppress_for, after a quiet spell) the same binary on the same host connects
    again: a new signal, saying it is returning, in the first one's group."""
    db = tmp_path / "live.db"
    shutil.copy(hand_fleet_db, db)
    config = load_config(None, env={})
    dropped = tmp_path / ".x" / "bash"  # a dropper's place: a suspect never settles there
    dropped.parent.mkdir()
    shutil.copy(shutil.which("bash") or "/bin/bash", dropped)
    script = f'exec 3<>/dev/tcp/{veth_ns.ns_v4}/{PORT}; echo "{{\\"pid\\": $$}}"; read -r _'
    first_at = ATTACK_AT + 60
    back_at = first_at + int(config.detect.suppress_for) + 2 * 3600
    found = []
    with Store(db) as store:
        for at in (first_at, back_at):
            with children() as kids:
                kids.append(Child([str(dropped), "-c", script]))
                pid = kids[0].line()["pid"]
                Collector(store, Normaliser(), host="web-03").collect_once(now=at)
            (path,) = {
                row[0]
                for row in store.conn.execute(
                    "SELECT path FROM observations WHERE pid = ? AND remote_port = ?", (pid, PORT)
                )
            }
            result = detect_once(store, config.detect, at - at % SPAN + 2 * SPAN)
            found.append([d for d in result.documents if d["process"]["executable"] == path])
    (first,), (again,) = found
    assert again["host"]["name"] == first["host"]["name"] == "web-03"
    assert again["id"] != first["id"] and again["group"] == first["id"]
    assert again["explanation"]["returning"]["signal"] == first["id"]
    assert again["reason"].startswith(f"returning: this binary raised signal {first['id'][:12]}")
    assert again["score"] >= first["score"] >= config.detect.threshold
