"""The heartbeat of `rarenet serve`: `make run`'s command on a real terminal (a pty) prints
a line per collect and detect step with the next run, in plain `rarenet: ` lines — uvicorn's
included, never coloured; and the rate limit, on a fake clock."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.rule import RunResult
from rarenet.baseline.ingest.chunks import ChunkCounts
from rarenet.baseline.serve.heartbeat import Heartbeat

COMPRESSED = """\
[collect]
interval = "1s"

[detect]
interval = "3s"
bucket_span = "3s"
lookback = "9s"
history = "5m"
"""
DETECT_EVERY = 3.0  # [detect] interval above; also the heartbeat's gap (min(60 s, it))
LEARNING = re.compile(
    r"learning: \d+/20 buckets, \d+ observations in the look-back \(about \d+(\.\d)?[smhd] "
    r"of data still needed; `make demo` shows signals now\)"
)


class Terminal:
    """`rarenet serve --local` (the Makefile's `run`) in `workdir`, on a pty, in its own
    process group; `--port 0` only, so it never collides with a running `make run`."""

    def __init__(self, workdir: Path) -> None:
        script = Path(sys.executable).with_name("rarenet")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "rarenet"]
        self.command = [*command, "serve", "--local", "--port", "0"]
        self.workdir = workdir
        self.raw = b""
        self._partial = b""
        self.lines: list[tuple[float, str]] = []  # (monotonic arrival, line without \r\n)
        self.proc: subprocess.Popen[bytes] | None = None
        self.master = -1

    def start(self) -> Terminal:
        self.master, slave = os.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        return self

    def read_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; the terminal shows:\n{self.text()}")
            if not self._read(min(left, 0.5)):
                raise AssertionError(f"serve exited; the terminal shows:\n{self.text()}")

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every end of the pty's other side is closed
            return False
        now = time.monotonic()
        self.raw += data
        *complete, self._partial = (self._partial + data).split(b"\n")
        for line in complete:
            self.lines.append((now, line.rstrip(b"\r").decode(errors="replace")))
        return bool(data)

    def text(self) -> str:
        return self.raw.decode(errors="replace")

    def matching(self, pattern: str) -> list[tuple[float, str]]:
        return [(at, line) for at, line in self.lines if re.search(pattern, line)]

    def url(self) -> str:
        found = re.search(r"listening on (http://\S+)", self.text())
        assert found, self.text()
        return found.group(1)

    def close(self) -> None:
        """Stop the whole process group (the detection and parse children too)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    try:
        yield term
    finally:
        term.close()


@pytest.mark.slow
def test_compressed_schedule_beats_every_interval_in_plain_lines(
    terminal: Terminal, tmp_path: Path
) -> None:
    (tmp_path / "rarenet.toml").write_text(COMPRESSED)
    terminal.start().read_until(lambda: "listening on" in terminal.text(), 45)
    with urllib.request.urlopen(terminal.url() + "/healthz", timeout=30) as answer:
        assert answer.status == 200
    terminal.read_until(lambda: bool(terminal.matching(r"rarenet: detect at ")), 45)
    began = terminal.matching(r"rarenet: detect at ")[0][0]
    window = 5 * DETECT_EVERY
    terminal.read_until(lambda: time.monotonic() - began > window, window + 15)

    detect = [(at, line) for at, line in terminal.matching(r"rarenet: detect at ") if at >= began]
    collect = [(at, line) for at, line in terminal.matching(r"rarenet: collect: ") if at >= began]
    assert len(detect) >= 4, terminal.text()  # about 6 expected: one per 3 s interval
    assert len(collect) >= 3, terminal.text()  # one per 3 s gap, with 1 s scans summed
    assert len(collect) <= window / (0.9 * DETECT_EVERY) + 2, terminal.text()  # not 1 a second
    for lines in (detect, collect):
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(lines)]
        assert max(gaps) < 2 * DETECT_EVERY + 3, (gaps, terminal.text())
    for _, line in detect:
        assert re.fullmatch(r"rarenet: detect at \d\d:\d\d:\d\d: .+; next \d\d:\d\d:\d\d", line)
        assert LEARNING.search(line), line
    for _, line in collect:
        assert re.fullmatch(
            r"rarenet: collect: \d+ sockets.*new observations.*; next in \d+ s", line
        )
    assert terminal.matching(r"collect: \d+ sockets on this host \(")  # the first scan
    assert terminal.matching(r'^rarenet: 127\.0\.0\.1:\d+ - "GET /healthz HTTP/1\.1" 200'), (
        terminal.text()
    )
    assert b"\x1b[" not in terminal.raw, terminal.text()  # no ANSI colour anywhere
    for _, line in terminal.lines:
        assert line.startswith("rarenet: ") and "INFO:" not in line, line


def test_default_settings_print_the_next_runs(terminal: Terminal) -> None:
    terminal.start()
    terminal.read_until(
        lambda: bool(terminal.matching("rarenet: detect at ") and terminal.matching("collect: ")),
        45,
    )
    [(_, collect)] = terminal.matching("rarenet: collect: ")
    wait = re.search(r"; next in (\d+) s$", collect)
    assert wait and 45 <= int(wait.group(1)) <= 60, collect  # [collect] interval 60 s
    [(_, detect)] = terminal.matching("rarenet: detect at ")
    assert LEARNING.search(detect), detect
    found = re.fullmatch(r"rarenet: detect at \d\d:\d\d: .+; next (\d\d):(\d\d)", detect)
    assert found, detect
    now = datetime.now()
    minutes = (int(found.group(1)) * 60 + int(found.group(2))) - (now.hour * 60 + now.minute)
    assert 14 <= minutes % 1440 <= 15, detect  # [detect] interval 15 min, local time


def test_stopping_during_the_start_up_run_is_prompt(terminal: Terminal) -> None:
    # A job that asked the scheduler for its next run deadlocked `shutdown` (which holds
    # the job-store lock while it waits for running jobs): Ctrl-C during the first run.
    terminal.start().read_until(lambda: "listening on" in terminal.text(), 45)
    assert terminal.proc is not None
    terminal.proc.send_signal(signal.SIGTERM)  # the start-up run is under way
    assert terminal.proc.wait(timeout=60) == 0
    with contextlib.suppress(AssertionError):  # the pty's other side closes: read the rest
        terminal.read_until(lambda: False, 5)
    assert "rarenet: stopped; every acknowledged request is committed" in terminal.text()


# -- the rate limit, on a fake clock ----------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def beat(settings: DetectSettings | None = None) -> tuple[Heartbeat, Clock, list[str]]:
    clock, lines = Clock(), []
    return Heartbeat(lines.append, settings or DetectSettings(), clock), clock, lines


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_fast_collect_prints_about_once_a_minute_with_the_scans_summed() -> None:
    heartbeat, clock, lines = beat()  # [detect] interval 15 min: the gap is 60 s
    for second in range(120):  # a 1 s [collect] interval
        clock.now = float(second)
        heartbeat.collected(37, 1, "web-1", in_seconds(1))
    assert lines == [  # at 0 s, then 54 s (the gap less 10 % for jitter), 108 s
        "collect: 37 sockets on this host (web-1), 1 new observations; next in 1 s",
        "collect: 37 sockets, 54 new observations in 54 scans; next in 1 s",
        "collect: 37 sockets, 54 new observations in 54 scans; next in 1 s",
    ]


def test_ingest_sums_every_source_and_says_nothing_when_nothing_came() -> None:
    heartbeat, clock, lines = beat(DetectSettings(interval=10.0))  # the gap is 10 s
    heartbeat.ingest_step()
    assert lines == []  # no files, nothing posted: nothing to say
    heartbeat.ingested("HTTP", ChunkCounts(5, 1, 0, 0, 0))
    heartbeat.ingest_step()
    for second in range(1, 9):
        clock.now = float(second)
        heartbeat.ingested("stream", ChunkCounts(2, 0, 1, 0, 0))
        heartbeat.ingest_step()
    assert lines == [
        "ingest: 5 new observations (1 duplicates, 0 rejected) from HTTP in the last 0s"
    ]
    clock.now = 10.0
    heartbeat.ingest_step(2, in_seconds(5))
    clock.now = 30.0
    heartbeat.ingest_step(0, in_seconds(5))
    assert lines[1:] == [
        "ingest: 16 new observations (0 duplicates, 8 rejected) from stream in the last 10s; "
        "2 file(s) tailed; next read in 5 s",
        "ingest: nothing new in the last 20s; no file matches [ingest] files yet; next read in 5 s",
    ]


def test_every_detection_run_prints_learning_or_warm() -> None:
    heartbeat, _, lines = beat()
    at = datetime(2026, 1, 5, 14, 15).timestamp()  # local time
    heartbeat.detected(
        RunResult(data_time=int(at), observations=812, learning="learning: 3/20 buckets"),
        datetime.fromtimestamp(at + 900).astimezone(),
    )
    heartbeat.detected(RunResult(data_time=int(at), candidates=9, signals=2, suppressed=1), None)
    assert lines == [
        "detect at 14:15: learning: 3/20 buckets, 812 observations in the look-back (about "
        "4.2h of data still needed; `make demo` shows signals now); next 14:30",
        "detect at 14:15: 0 observations in the look-back, 9 candidates, 2 new signal(s) "
        "(1 suppressed)",
    ]
