"""The import boundaries the layout promises, read from every source file's imports.

Code and tests import only `rarenet.…` names: in a checkout `baseline` is also
importable from the top folder, and a module loaded under both names would be two
modules (two `ConfigError` classes, two stores' locks). The host side never imports the
service or its dependencies: hosts install the extension without them.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_ONLY = {"numpy", "sqlite_utils", "apscheduler", "click", "orjson", "requests"}


def imports(folder: str) -> Iterator[tuple[str, str]]:
    """(file:line, imported module) of every absolute import under `folder`."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_bytes(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                yield f"{path.relative_to(ROOT)}:{node.lineno}", name


def test_nothing_imports_the_bare_folder_names() -> None:
    bare = [
        (where, name)
        for folder in ("baseline", "extension", "tests", "rarenet")
        for where, name in imports(folder)
        if name.split(".")[0] in {"baseline", "extension"}
    ]
    assert bare == []
    assert any(name.startswith("rarenet.extension") for _, name in imports("baseline"))


def test_the_extension_never_imports_the_service_or_its_dependencies() -> None:
    crossing = [
        (where, name)
        for where, name in imports("extension")
        if name.startswith("rarenet.baseline") or name.split(".")[0] in SERVICE_ONLY
    ]
    assert crossing == []
    assert any(name.startswith("rarenet.extension") for _, name in imports("extension"))


def test_the_version_is_written_once() -> None:
    """extension/__init__.py holds rarenet's version; pyproject.toml and the service read it."""
    from rarenet.baseline import __version__ as service
    from rarenet.extension import __version__ as host

    written = [
        str(path.relative_to(ROOT))
        for folder in ("baseline", "extension")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if f'"{host}"' in path.read_text()
    ]
    assert written == ["extension/__init__.py"] and service == host
    assert f'version = "{host}"' not in (ROOT / "pyproject.toml").read_text()


def test_the_tour_of_the_tree_names_every_module() -> None:
    """docs/design.md names every module of baseline/ and extension/ (by file name or
    stem) and every package folder, so the tour cannot fall behind the tree."""
    tour = (ROOT / "docs" / "design.md").read_text()
    missing = [
        str(path.relative_to(ROOT))
        for folder in ("baseline", "extension")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "__init__.py"
        and not re.search(rf"(?<![\w-]){re.escape(path.stem)}(\.py)?\b", tour)
    ]
    folders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "baseline").iterdir())
        if (path / "__init__.py").exists() and f"{path.name}/" not in tour
    ]
    assert missing == [] and folders == [], (missing, folders)


def test_the_cli_reference_is_the_commands_own_help(tmp_path: Path) -> None:
    """docs/cli.md is generated from click; `--check` (run by `make lint`) fails on a stale
    copy and names the command that regenerates it. Run in a fresh interpreter, as lint
    runs it: click caches a command's help option on first use, so a command invoked on
    its own earlier in this process would lose `-h`."""
    command = [sys.executable, "-m", "rarenet.baseline.cli.reference", "--check"]
    fresh = subprocess.run([*command, str(ROOT / "docs" / "cli.md")], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    text = (ROOT / "docs" / "cli.md").read_text()
    assert "## `rarenet serve`" in text and "## `rarenet users add`" in text
    stale = tmp_path / "cli.md"
    stale.write_text(text.replace("Show this message and exit.", "Shows help.", 1))
    refused = subprocess.run([*command, str(stale)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "run `make cli-reference`" in refused.stderr


def test_no_test_or_benchmark_imports_a_test_module() -> None:
    """Shared fixtures and helpers live in a conftest.py or tests/support/, never in a
    test module another file imports (tests/benchmarks/ included)."""
    crossing = [
        (where, name)
        for where, name in imports("tests")
        if name.split(".")[-1].startswith(("test_", "bench_", "conftest"))
    ]
    assert crossing == []
    assert any(name.startswith("support") for _, name in imports("tests/benchmarks"))
