"""Interrupting `rarenet ingest` (SIGKILL, SIGINT) never corrupts or double-counts:
a re-run ends with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from support.osquery_lines import T0, event, socket_row

ROWS = 60_000
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~40 MB of differential events with a few bad lines sprinkled in."""
    path = tmp_path_factory.mktemp("crash") / "big.log"
    with path.open("wb") as handle:
        for i in range(ROWS):
            row = socket_row(pid=100 + i % 30000, remote_port=1 + i % 60000, name=f"bin{i % 50}")
            handle.write(
                orjson.dumps(event(row, unix=T0 + i // 10, host=f"host-{i % 200}")) + b"\n"
            )
            if i % 9973 == 0:
                handle.write(b'{"truncated": \n')
    return path


# A command started in the background by a non-interactive shell (`make test &`, CI
# runners) inherits SIGINT ignored, and Python then leaves it ignored: Ctrl-C would not
# reach the ingest under test. It gets the default Ctrl-C behaviour back explicitly.
WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'rarenet'; runpy.run_module('rarenet', run_name='__main__')"
)


def ingest(db: Path, log: Path, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WITH_CTRL_C,
            "ingest",
            "--db",
            str(db),
            "--workers",
            str(workers),
            "--json",
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def contents(db: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT time, host, name, path, pid, remote_port, digest FROM observations ORDER BY time, digest"
        ).fetchall()
        quarantined = conn.execute(
            "SELECT source, line, reason FROM quarantine ORDER BY line"
        ).fetchall()
    finally:
        conn.close()
    return rows, quarantined


def committed_rows(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=0.5)
        try:
            return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def reference(
    big_log: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    db = tmp_path_factory.mktemp("reference") / "ref.db"
    proc = ingest(db, big_log, workers=1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # 1: some lines were quarantined
    report = orjson.loads(out)
    assert report["observations"] == ROWS and report["rejected"] == 7
    return contents(db)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_ingest_resumes_exactly(
    big_log: Path,
    reference: tuple[list[tuple[object, ...]], list[tuple[object, ...]]],
    tmp_path: Path,
    workers: int,
    how: signal.Signals,
) -> None:
    db = tmp_path / "interrupted.db"
    proc = ingest(db, big_log, workers)
    deadline = time.monotonic() + 120
    while committed_rows(db) < ROWS // 10:  # wait until it is well under way
        assert proc.poll() is None, "ingest finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, how)
    proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGKILL, 130)
    partial = committed_rows(db)
    assert 0 < partial < ROWS, "the kill landed mid-file"

    rerun = ingest(db, big_log, workers)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 1, err
    report = orjson.loads(out)
    assert report["observations"] == ROWS - partial  # exactly the missing rows
    assert contents(db) == reference
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
