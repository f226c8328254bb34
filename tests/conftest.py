"""Shared fixtures: real-shaped osquery result lines and temporary stores."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import e2e_backtest
import pytest

from rarenet.baseline.config import Config, load_config
from rarenet.baseline.store import Store


@pytest.fixture
def config() -> Config:
    """The built-in defaults, untouched by the caller's environment or ./rarenet.toml."""
    return load_config(None, env={})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "rarenet.db") as opened:
        yield opened


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's RARENET_* variables or ./rarenet.toml."""
    import os

    for name in list(os.environ):
        if name.startswith("RARENET_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


E2E_MODULE = "test_backtest_e2e.py"
E2E_JOB = pytest.StashKey[tuple[subprocess.Popen[bytes], Path]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the end-to-end backtest last and start its data job now, in the background."""
    e2e = [item for item in items if item.path.name == E2E_MODULE]
    if not e2e:
        return
    items[:] = [item for item in items if item.path.name != E2E_MODULE] + e2e
    directory = Path(tempfile.mkdtemp(prefix="rarenet-e2e-"))
    config.stash[E2E_JOB] = (e2e_backtest.start(directory), directory)


def pytest_unconfigure(config: pytest.Config) -> None:
    job = config.stash.get(E2E_JOB, None)
    if job is not None:
        process, directory = job
        if process.poll() is None:
            process.kill()
            process.wait()
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def e2e_backtest_dir(request: pytest.FixtureRequest) -> Path:
    """The directory with the e2e fleet, its labels and `result.json` (see e2e_backtest)."""
    process, directory = request.config.stash[E2E_JOB]
    return e2e_backtest.wait(process, directory)
