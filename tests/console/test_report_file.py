"""`rarenet report --out` writes only where it should (issue 30): through a new
temporary file in the target's directory, never following a planted link, never
replacing a device, pipe, directory or link, leaving nothing behind when it refuses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.osquery_lines import T0, connection_line


def report(db: Path, out: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rarenet", "report", "--db", str(db), "--out", out],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def one_connection_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one connection (nginx on web-1), ingested by `rarenet ingest`."""
    directory = tmp_path_factory.mktemp("report")
    log = directory / "fleet.log"
    log.write_bytes(connection_line("web-1", T0, "nginx", "/usr/sbin/nginx", "192.0.2.1", 443))
    path = directory / "fleet.db"
    done = subprocess.run(
        [sys.executable, "-m", "rarenet", "ingest", "--db", str(path), str(log)],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


def test_a_planted_partial_link_is_never_followed(one_connection_db: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".report.html.partial").symlink_to(victim)
    done = report(one_connection_db, str(tmp_path / "report.html"))
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious"
    assert (tmp_path / "report.html").read_text().startswith("<!doctype html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".report.html.partial", "report.html", "victim",
    ]  # fmt: skip


def test_a_pipe_a_device_a_link_or_a_directory_is_refused_and_nothing_is_left(
    one_connection_db: Path, tmp_path: Path
) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "elsewhere.html")
    targets = {"pipe": str(pipe), "a symbolic link": str(link), "a directory": str(tmp_path)}
    if os.geteuid() == 0:  # a device node of our own (as /dev/null would be)
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets["device"] = str(device)
    before = sorted(p.name for p in tmp_path.iterdir())
    for kind, target in targets.items():
        done = report(one_connection_db, target)
        assert done.returncode == 2, (kind, done.stderr)
        assert "the report replaces only a regular file" in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and os.path.islink(link)
    if "device" in targets:
        assert stat.S_ISCHR(os.lstat(targets["device"]).st_mode)


def test_an_empty_name_is_bad_input_not_an_internal_error(one_connection_db: Path) -> None:
    done = report(one_connection_db, "")
    assert done.returncode == 2 and "--out must name a file" in done.stderr, done.stderr
