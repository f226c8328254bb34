"""No command's output can drive a terminal (issue 30): process and host names, paths
and rejected lines from hosts may carry escape sequences (clear screen, an OSC window
title, an 8-bit CSI, a bidi override); every command prints them as inert `\\uXXXX`
escapes, and its `--json` still parses to the exact values."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from support.osquery_lines import T0, connection_line

HOST = "web-1\x1b]0;pwned\x07"
NAME = "evil\x1b[2J\x9b31m\u202e"
PATH = "/tmp/.x/\x1b[1;31mbeacon"
RAW = (b"\x1b", b"\x07", "\x9b".encode(), "\u202e".encode())


def rarenet(*args: str) -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "rarenet", *args], capture_output=True, timeout=120, check=False
    )
    assert done.returncode in (0, 1), done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def hostile_fleet_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Routine nginx, one attack whose name and path hold escape sequences, and a bad line
    quarantined as it came."""
    directory = tmp_path_factory.mktemp("terminal")
    log = directory / "hostile.log"
    routine = [
        connection_line(f"web-{n}", T0 + b * 900 + n, "nginx", "/usr/sbin/nginx", "192.0.2.1", 443)
        for b in range(30)
        for n in range(3)
    ]
    attack = connection_line(HOST, T0 + 30 * 900 + 5, NAME, PATH, "203.0.113.9", 4444)
    bad = b'{"name": "x\x1b[2J", "oops": \n'  # not JSON: quarantined as it came
    log.write_bytes(b"".join(routine) + attack + bad)
    path = directory / "fleet.db"
    rarenet("ingest", "--db", str(path), str(log))
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["detect", "--at", str(T0 + 31 * 900)],
        ["explain", HOST, PATH, "--at", str(T0 + 31 * 900)],
        ["signals", "list"],
    ],
    ids=["detect", "explain", "signals-list"],
)
def test_text_output_escapes_what_hosts_sent(hostile_fleet_db: Path, command: list[str]) -> None:
    out = rarenet(*command, "--db", str(hostile_fleet_db))
    assert out, command
    assert not any(raw in out for raw in RAW), out[:300]
    assert b"\\u001b" in out or b"\\x1b" in out, out[:300]


def test_json_output_is_inert_and_parses_to_the_exact_values(hostile_fleet_db: Path) -> None:
    at = str(T0 + 31 * 900)
    detected = rarenet("detect", "--at", at, "--db", str(hostile_fleet_db), "--json")
    explained = rarenet("explain", HOST, PATH, "--at", at, "--db", str(hostile_fleet_db), "--json")
    for out in (detected, explained):
        assert not any(raw in out for raw in RAW), out[:300]
    assert orjson.loads(explained)["host"] == HOST
    (finding,) = orjson.loads(explained)["findings"]
    assert finding["name"] == NAME and finding["path"] == PATH


def test_a_rejected_line_is_shown_inert_on_a_terminal_and_exact_when_piped(
    hostile_fleet_db: Path,
) -> None:
    piped = rarenet("quarantine", "show", "1", "--db", str(hostile_fleet_db))
    assert piped == b'{"name": "x\x1b[2J", "oops": \n'  # to fix and ingest again
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "rarenet", "quarantine", "show", "1", "--db", str(hostile_fleet_db)],
            stdout=follower, stderr=subprocess.DEVNULL, timeout=120, check=True,
        )  # fmt: skip
        assert done.returncode == 0
        os.close(follower)
        shown = b""
        while chunk := _read(leader):
            shown += chunk
    finally:
        os.close(leader)
    assert b"\x1b" not in shown and b"\\u001b[2J" in shown, shown


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the other side is closed and everything was read
        return b""
