"""The files users look for: the example rarenet.toml (every setting, generated from the
settings), the systemd unit, and shell completion (click's)."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from support import ROOT

from rarenet.baseline.config import describe_settings, load_config
from rarenet.baseline.config_example import example_toml

EXAMPLE = ROOT / "docs" / "examples" / "rarenet.toml"
UNIT = ROOT / "docs" / "examples" / "rarenet.service"


def test_the_example_is_generated_from_the_settings_and_names_every_one() -> None:
    text = EXAMPLE.read_text()
    assert text == example_toml(), "regenerate: python -c 'from rarenet.baseline.config_example …'"
    for section, key, _default, help_text in describe_settings():
        assert f"# {key} = " in text and help_text in text, (section, key)


def test_the_example_loads_as_is_and_with_every_line_uncommented(tmp_path: Path) -> None:
    defaults = load_config(None, env={})
    as_is = tmp_path / "as-is.toml"
    as_is.write_text(EXAMPLE.read_text())
    assert replace(load_config(str(as_is), env={}), source=None) == defaults
    uncommented = re.sub(
        r"^# (\[\[webhooks\]\]|[a-z_]+ = )", r"\1", EXAMPLE.read_text(), flags=re.M
    )
    every = tmp_path / "every.toml"
    every.write_text(uncommented)
    loaded = load_config(str(every), env={})
    assert replace(loaded, source=None, webhooks=()) == defaults  # the defaults, written out
    assert [hook.url for hook in loaded.webhooks] == ["https://hooks.example.com/rarenet"]


def test_the_systemd_unit_runs_serve_and_stops_cleanly() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("/.venv/bin/rarenet serve")
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure"
    assert service["Environment"] == "RARENET_CONFIG=/etc/rarenet/rarenet.toml"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_shell_completion_comes_from_click() -> None:
    rarenet = Path(sys.executable).with_name("rarenet")
    script = subprocess.run(
        [str(rarenet)],
        env={**os.environ, "_RARENET_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "_rarenet_completion" in script and "complete " in script
    offered = subprocess.run(
        [str(rarenet)],
        env={**os.environ, "_RARENET_COMPLETE": "bash_complete", "COMP_WORDS": "rarenet sig",
             "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout  # fmt: skip
    assert "signals" in offered.split()[1::2] or "plain,signals" in offered
