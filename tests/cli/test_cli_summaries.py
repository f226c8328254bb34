"""`rarenet backtest` and `rarenet demo` summaries: one tagged line per signal, plurals,
recall with every missed label named, a progress bar and colour on a terminal only, and
`--db` refused by the commands that use their own store or write files."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from rarenet.baseline.cli import main
from rarenet.baseline.cli.summary import Look, plural, summary_lines
from rarenet.baseline.config import load_config
from rarenet.baseline.detect.backtest import Backtest
from rarenet.baseline.detect.maintenance import prune_once, replay_of
from rarenet.baseline.detect.rule import RunResult
from rarenet.baseline.ingest.pipeline import IngestReport
from rarenet.baseline.simulate import Label, SimulationSpec, read_labels, simulate_to_path
from rarenet.baseline.store import Store
from rarenet.baseline.units import format_time

RARENET = Path(sys.executable).with_name("rarenet")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
START = 1767571200  # 2026-01-05T00:00:00Z, the simulator's default start
NEVER = Label(
    "web-001", "/opt/never/ran", "ran", START + 6 * 3600, START + 7 * 3600, "never-happened"
)


def command() -> list[str]:
    return [str(RARENET)] if RARENET.exists() else [sys.executable, "-m", "rarenet"]


def environment(**extra: str) -> dict[str, str]:
    """The caller's environment without rarenet settings or a forced width/colour."""
    drop = ("RARENET_", "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "CLICOLOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


def _terminal(columns: int) -> tuple[int, int]:
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    return primary, secondary


def _drain(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        into.append(chunk)
    os.close(fd)


def run_cli(
    *args: str, tty: bool, columns: int = 120, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`rarenet ARGS` with stdout and stderr each on its own terminal (`tty`) or pipe;
    returns the exit code, stdout and stderr (terminal line ends made plain)."""
    ends = [_terminal(columns) if tty else os.pipe() for _ in range(2)]
    proc = subprocess.Popen(
        [*command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=ends[0][1],
        stderr=ends[1][1],
        env=env or environment(),
    )
    seen: list[list[bytes]] = [[], []]
    readers = [
        threading.Thread(target=_drain, args=(read, seen[i]), daemon=True)
        for i, (read, write) in enumerate(ends)
    ]
    for (_, write), reader in zip(ends, readers, strict=True):
        os.close(write)
        reader.start()
    code = proc.wait(timeout=240)
    for reader in readers:
        reader.join(timeout=30)
    out, err = (b"".join(chunks).decode().replace("\r\n", "\n") for chunks in seen)
    return code, out, err


def widest(text: str) -> int:
    return max((len(ANSI.sub("", line)) for line in text.splitlines()), default=0)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small SYNTHETIC fleet with attacks, plus one label for something that never
    happened (so at least one label is missed)."""
    directory = tmp_path_factory.mktemp("fleet")
    log, labels = directory / "fleet.log", directory / "fleet.labels.jsonl"
    simulate_to_path(SimulationSpec(hosts=10, days=1, attacks=True, seed=1), log, labels)
    with labels.open("ab") as handle:
        handle.write(orjson.dumps(NEVER.to_json(), option=orjson.OPT_APPEND_NEWLINE))
    return log, labels


@pytest.fixture(scope="module")
def as_json(fleet: tuple[Path, Path]) -> dict[str, Any]:
    """`backtest --labels --json` on a terminal: one document, no progress bar."""
    log, labels = fleet
    code, out, err = run_cli("backtest", str(log), "--labels", str(labels), "--json", tty=True)
    assert code == 0, err
    assert "replaying" not in err and "ingesting" not in err
    document: dict[str, Any] = orjson.loads(out)
    return document


def test_backtest_json_lists_every_missed_label_and_labels_each_signal(
    fleet: tuple[Path, Path], as_json: dict[str, Any]
) -> None:
    labels = read_labels(fleet[1])
    missed = as_json["missed"]
    assert NEVER.to_json() in missed
    metrics = as_json["metrics"]
    assert {"labelled", "detected", "recall", "precision", "false_signals"} <= set(metrics)
    assert metrics["labelled"] == len(labels)
    assert metrics["detected"] == len(labels) - len(missed)
    techniques = {label.technique for label in labels}
    assert all("label" in signal for signal in as_json["signals"])
    tagged = [signal["label"] for signal in as_json["signals"] if signal["label"]]
    assert tagged and set(tagged) <= techniques - {NEVER.technique}


def test_backtest_piped_is_plain_fits_100_columns_and_names_the_misses(
    fleet: tuple[Path, Path], as_json: dict[str, Any]
) -> None:
    log, labels = fleet
    code, out, err = run_cli("backtest", str(log), "--labels", str(labels), tty=False)
    assert code == 0, err
    assert "\x1b" not in out + err and err == ""  # no colour, no progress bar
    assert widest(out) <= 100
    labelled = len(read_labels(labels))
    caught = labelled - len(as_json["missed"])
    assert f"caught {caught}/{labelled} labelled attacks" in out
    assert f"missed     {plural(len(as_json['missed']), 'labelled attack')}:" in out
    rows = out.splitlines()
    for miss in as_json["missed"]:
        assert any(
            miss["hostIdentifier"] in row
            and miss["technique"] in row
            and miss["path"] in row
            and format_time(miss["from"]) in row
            for row in rows
        ), miss
    for signal in as_json["signals"]:
        tag = f"attack {signal['label']}" if signal["label"] else "unlabelled"
        assert any(tag in row and signal["host"]["name"] in row for row in rows), tag
    assert f"{plural(len(as_json['signals']), 'signal')} from {as_json['runs']} runs" in out
    assert "score histogram" in out and "{" not in out  # a table, not a dict


def test_backtest_on_a_terminal_colours_and_shows_progress(fleet: tuple[Path, Path]) -> None:
    log, labels = fleet
    code, out, err = run_cli("backtest", str(log), "--labels", str(labels), tty=True)
    assert code == 0, err
    assert "\x1b[" in out  # colour on the terminal
    assert "replaying runs" in err  # the bar, on stderr
    assert "replaying" not in out
    assert widest(out) <= 120
    assert "never-happened" in out


def test_no_color_and_a_narrow_terminal(fleet: tuple[Path, Path]) -> None:
    log, labels = fleet
    env = environment(NO_COLOR="1")
    code, out, err = run_cli(
        "backtest", str(log), "--labels", str(labels), tty=True, columns=80, env=env
    )
    assert code == 0, err
    assert "\x1b[" not in out and "replaying runs" in err
    assert widest(out) <= 80


@pytest.mark.parametrize(
    ("count", "word", "text"),
    [(1, "signal", "1 signal"), (2, "signal", "2 signals"), (0, "signal", "0 signals"),
     (1.0, "day", "1 day"), (0.5, "day", "0.5 days"), (1234, "run", "1,234 runs")],
)  # fmt: skip
def test_plural(count: float, word: str, text: str) -> None:
    assert plural(count, word) == text


def signal_doc(host: str, path: str, bucket: int) -> dict[str, Any]:
    return {
        "score": 100.0,
        "host": {"name": host},
        "process": {"name": path.rsplit("/", 1)[-1], "executable": path},
        "user": {"name": "root"},
        "destination": {"ip": "203.0.113.7", "port": 4444},
        "bucket": {"start": format_time(bucket), "span": "15m"},
        "reason": "never seen in 1,234 fleet host-buckets " + "and more words " * 20,
    }


def backtest_of(signals: list[dict[str, Any]], labels: list[Label] | None) -> Backtest:
    run = RunResult(data_time=START + 86400, signals=len(signals), documents=signals)
    run.histogram[9] = len(signals)
    return Backtest(IngestReport(), [run], labels=labels, span=900, start=START, stop=START + 86400)


def test_summary_plurals_for_one_signal_one_run_one_day() -> None:
    signal = signal_doc("web-001", "/usr/bin/bash", START + 3600)
    label = Label("web-001", "/usr/bin/bash", "bash", START + 3600, START + 3700, "shell")
    text = "\n".join(summary_lines(backtest_of([signal], [label]), Look(200, False)))
    assert "1 signal from 1 run over 1 day of data" in text
    assert re.search(r"caught 1/1 labelled attack(?!s)", text)
    assert "1/1 signal matches a label" in text
    assert "0 false signals" in text and "missed     none" in text
    assert "attack shell" in text


def test_summary_tags_unlabelled_names_misses_fits_and_colours_only_when_asked() -> None:
    caught = signal_doc("web-001", "/usr/bin/bash", START + 3600)
    other = signal_doc("db-001", "/usr/sbin/cron", START + 7200)
    labels = [
        Label("web-001", "/usr/bin/bash", "bash", START + 3600, START + 3700, "shell"),
        NEVER,
    ]
    plain = summary_lines(backtest_of([caught, other], labels), Look(60, False))
    text = "\n".join(plain)
    assert "2 signals" in text and "caught 1/2 labelled attacks" in text
    assert "missed     1 labelled attack:" in text
    assert any("unlabelled" in line and "db-001" in line for line in plain)
    assert "\x1b" not in text and max(len(line) for line in plain) <= 60
    assert any(line.endswith("…") for line in plain)
    missed = [line for line in plain if "never-happened" in line]
    assert len(missed) == 1 and "web-001" in missed[0]
    coloured = summary_lines(backtest_of([caught, other], labels), Look(200, True))
    assert any("\x1b[" in line for line in coloured)
    assert max(len(ANSI.sub("", line)) for line in coloured) <= 200
    unlabelled = summary_lines(backtest_of([other], None), Look(80, False))
    assert any("no labels given" in line for line in unlabelled)


@pytest.mark.parametrize(
    "args",
    [
        ["backtest", "{tmp}/fleet.log", "--db", "{tmp}/r.db"],
        ["simulate", "--hosts", "2", "--days", "1", "--out", "{tmp}/fleet.log", "--db", "{tmp}/r.db"],
        ["--db", "{tmp}/r.db", "simulate", "--hosts", "2", "--days", "1", "--out", "{tmp}/fleet.log"],
        ["demo", "--db", "{tmp}/r.db"],
    ],
)  # fmt: skip
def test_db_is_refused_where_the_command_uses_its_own_store(
    tmp_path: Path, args: list[str]
) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert result.exit_code == 2
    assert "--db" in result.stderr and "drop --db" in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written, no store made


@pytest.mark.slow
def test_demo_json_has_missed_and_a_label_per_signal(tmp_path: Path) -> None:
    code, out, err = run_cli("demo", "--hosts", "10", "--days", "1", "--json", tty=False)
    assert code == 0, err
    document = orjson.loads(out)  # stdout is the document alone
    assert {"signals", "metrics", "missed", "runs", "server_exit", "workdir"} <= set(document)
    assert document["server_exit"] == 0 and document["workdir"] is None
    metrics = document["metrics"]
    assert metrics["detected"] == metrics["labelled"] - len(document["missed"])
    assert all({"hostIdentifier", "technique", "from", "to"} <= set(m) for m in document["missed"])
    assert all("label" in signal for signal in document["signals"])
    assert any(signal["label"] for signal in document["signals"])


@pytest.mark.slow
def test_demo_summary_names_misses_and_says_what_to_run_next(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    code, out, err = run_cli(
        "demo", "--hosts", "10", "--days", "1", "--workdir", str(work), tty=False
    )
    assert code == 0, err
    assert "\x1b" not in out
    labels = read_labels(work / "fleet.labels.jsonl")
    found = re.search(r"caught (\d+)/(\d+) injected attacks", out)
    assert found and int(found.group(2)) == len(labels)
    missed = len(labels) - int(found.group(1))
    assert ("missed     none" in out) if not missed else f"missed     {missed} injected" in out
    assert "attack " in out and "[injected attack]" in out
    assert f"rarenet backtest {work}/fleet.log --labels {work}/fleet.labels.jsonl" in out
    assert "make run" in out and "README.md" in out
    assert (work / "rarenet.db").exists()
    assert f"rarenet serve --db {work}/rarenet.db --port 8081" in out
    # a serve opened on the demo's store later (default settings: 30 days of retention
    # from now, and the demo's data is older) keeps what the demo shows
    with Store(work / "rarenet.db") as store:
        held = store.summary().observations
        assert held > 0 and replay_of(store) == "rarenet demo"
        pruned = prune_once(store, load_config(None, env={}))
        assert pruned.observations == 0 and store.summary().observations == held
    table = [line for line in out.splitlines() if str(work) not in line]
    assert max(len(line) for line in table) <= 100
