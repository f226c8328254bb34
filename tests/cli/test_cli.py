"""The `rarenet` command line: ingest from files and stdin, --json, exit codes, docs."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import click
import orjson
from click.testing import CliRunner
from support import ROOT
from support.osquery_lines import T0, event, line, socket_row

from rarenet.baseline.cli import GuardedCommand, main

README = ROOT / "README.md"


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def good_lines(count: int) -> bytes:
    return b"".join(line(event(socket_row(pid=100 + i), unix=T0 + i)) for i in range(count))


def test_ingest_json_document(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(good_lines(5))
    code, out, _ = run("ingest", "--db", str(tmp_path / "r.db"), "--json", str(log))
    assert code == 0
    report = orjson.loads(out)
    assert {k: report[k] for k in ("lines", "observations", "duplicates", "rejected")} == {
        "lines": 5,
        "observations": 5,
        "duplicates": 0,
        "rejected": 0,
    }
    assert isinstance(report["seconds"], float)


def test_ingest_stdin_gzip_twice_is_idempotent(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    data = gzip.compress(good_lines(4))
    first = orjson.loads(run("ingest", "--db", db, "--json", "-", input=data)[1])
    second = orjson.loads(run("ingest", "--db", db, "--json", "-", input=data)[1])
    assert (first["observations"], second["observations"], second["duplicates"]) == (4, 0, 4)


def test_summary_line_and_exit_1_when_lines_are_quarantined(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(good_lines(2) + b"{broken\n")
    code, out, err = run("--db", str(tmp_path / "r.db"), "ingest", str(log))
    assert code == 1
    assert re.match(
        r"read 3 lines: 2 observations stored, 0 duplicates, 1 rejected, 0 filtered, 0 other rows skipped in [\d.]+s \([\d,]+ rows/s\)",
        out,
    )
    assert "quarantined" in err
    code, out, _ = run("--db", str(tmp_path / "r.db"), "quarantine", "list")
    assert code == 0 and f"{log}:3" in out and "not valid JSON" in out


def test_unreadable_input_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    code, _, err = run("ingest", "--db", str(tmp_path / "r.db"), str(tmp_path / "missing.log"))
    assert code == 2
    assert f"rarenet: error: {tmp_path / 'missing.log'}: no such file" in err


def test_bad_config_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "rarenet.toml"
    config.write_text('[ingest]\nmax_body = "huge"\n')
    log = tmp_path / "a.log"
    log.write_bytes(good_lines(1))
    code, _, err = run("ingest", "--config", str(config), str(log))
    assert code == 2
    assert f"{config}:2: [ingest] max_body: 'huge' is not a size" in err


def test_db_that_is_not_sqlite_exits_3(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"not a database at all" * 100)
    code, _, err = run("status", "--db", str(bogus))
    assert code == 3 and "cannot open the store" in err


def test_status_reports_what_is_stored(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    log = tmp_path / "a.log"
    log.write_bytes(good_lines(3))
    run("ingest", "--db", db, str(log))
    code, out, _ = run("status", "--db", db, "--json")
    summary = orjson.loads(out)
    assert code == 0 and (summary["observations"], summary["hosts"], summary["files"]) == (3, 1, 1)
    code, out, _ = run("status", "--db", db)
    assert "observations 3" in out and "2026-01-05T00:01:00Z" in out


def test_python_dash_m_baseline_is_the_same_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rarenet", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith("rarenet, version")


def every_command() -> list[tuple[str, click.Command]]:
    """Every top-level command, each imported as running it would (they load lazily)."""
    ctx = click.Context(main)
    found = [(name, main.get_command(ctx, name)) for name in main.list_commands(ctx)]
    assert all(command is not None for _, command in found)
    return [(name, command) for name, command in found if command is not None]


def test_commands_load_when_they_run_and_every_one_is_guarded() -> None:
    """`rarenet --version` imports no command module; every command, loaded, is a
    GuardedCommand (or a group of them) named as `rarenet` lists it."""
    probe = (
        "import sys\nfrom rarenet.baseline.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.endswith('_cmd')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]", done.stdout
    for name, command in every_command():
        assert command.name == name
        leaves = getattr(command, "commands", {name: command}).values()
        assert all(isinstance(leaf, GuardedCommand) for leaf in leaves), name


def test_every_command_is_in_the_readme() -> None:
    readme = README.read_text()
    for name, command in every_command():
        assert f"rarenet {name}" in readme, f"`rarenet {name}` is not documented in README.md"
        subcommands = getattr(command, "commands", {})
        for sub in subcommands:
            assert f"rarenet {name} {sub}" in readme, f"`rarenet {name} {sub}` is not in README.md"


def test_every_command_accepts_db_and_config() -> None:
    for name, command in every_command():
        leaves = getattr(command, "commands", {name: command})
        for leaf_name, leaf in leaves.items():
            options = {opt for param in leaf.params for opt in getattr(param, "opts", [])}
            assert {"--db", "--config"} <= options, f"{name} {leaf_name} lacks --db/--config"


def test_progress_bar_on_a_tty_only(tmp_path: Path) -> None:
    import os
    import pty

    log = tmp_path / "a.log"
    log.write_bytes(good_lines(200))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rarenet", "ingest", "--db", str(tmp_path / "r.db"), str(log)],
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    out, _ = proc.communicate(timeout=60)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert proc.returncode == 0
    assert b"ingesting" in seen  # the bar went to the terminal…
    assert b"ingesting" not in out and out.startswith(b"read 200 lines")  # …not into stdout
