"""Shared fixtures: real-shaped osquery result lines and temporary stores."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import e2e_backtest
from support.stores import opened_copy

from rarenet.baseline.config import Config, DetectSettings, load_config
from rarenet.baseline.store import Store


@pytest.fixture
def config() -> Config:
    """The built-in defaults, untouched by the caller's environment or ./rarenet.toml."""
    return load_config(None, env={})


@pytest.fixture
def settings(config: Config) -> DetectSettings:
    """The built-in detection settings."""
    return config.detect


@pytest.fixture
def empty_store(tmp_path: Path) -> Iterator[Store]:
    """A new store with every migration applied and nothing in it."""
    with Store(tmp_path / "rarenet.db") as opened:
        yield opened


@pytest.fixture(scope="session")
def hand_fleet_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-built fleet's store (tests/support/hand_fleet.py: 27 hosts × 4 days, then the
    attacks), ingested once per test session; copy it before writing to it."""
    from support.hand_fleet import build_hand_fleet

    return build_hand_fleet(tmp_path_factory.mktemp("hand-fleet"))


@pytest.fixture
def hand_fleet_store(hand_fleet_db: Path, tmp_path: Path) -> Iterator[Store]:
    """A copy of the hand-built fleet's store (`hand_fleet_db`) to run on and change."""
    yield from opened_copy(hand_fleet_db, tmp_path)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's RARENET_* variables or ./rarenet.toml."""
    for name in list(os.environ):
        if name.startswith("RARENET_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


E2E_MODULE = "test_backtest_e2e.py"
E2E_JOB = pytest.StashKey[tuple[subprocess.Popen[bytes], Path]]()
# Modules that take longest, started first so that with several workers (`make test`:
# pytest-xdist, whole modules per worker) no long module is left running alone at the end.
HEAVY_FIRST = (
    "test_quality_families.py",
    "test_shards.py",
    "test_partitions.py",
    "test_late_live.py",
    "test_shard_api.py",
    "test_consume.py",
    "test_late.py",
    "test_explain.py",
    "test_serve_heartbeat.py",
    "test_webhook_health.py",
    "test_deliver_deadline.py",
    "test_nats_faults.py",
    "test_serve_defences.py",
    "test_access.py",
    "test_serve.py",
)


def _e2e_selected(config: pytest.Config) -> bool:
    """Whether this run's paths include the end-to-end module (a directory above it or
    the file itself), judged before collection."""
    module = (Path(__file__).parent / "detect" / E2E_MODULE).resolve()
    paths = [str(a).split("::", 1)[0] for a in config.args] or ["."]
    return any(
        (config.invocation_params.dir / arg).resolve() in (module, *module.parents) for arg in paths
    )


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the end-to-end backtest's data job once per run, in the process that runs
    the session (pytest-xdist's controller, which starts its workers after this hook
    with the directory in their environment), so its ~1.5 minutes overlap the suite."""
    config = session.config
    if hasattr(config, "workerinput") or not _e2e_selected(config):
        return
    directory = Path(tempfile.mkdtemp(prefix="rarenet-e2e-"))
    config.stash[E2E_JOB] = (e2e_backtest.start(directory), directory)
    os.environ[e2e_backtest.DIR_VARIABLE] = str(directory)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest modules first, the end-to-end backtest last (its job runs meanwhile)."""
    rank = {name: n for n, name in enumerate(HEAVY_FIRST)}
    last = len(HEAVY_FIRST) + 1
    order = {id(item): n for n, item in enumerate(items)}
    items.sort(
        key=lambda item: (
            last + 1 if item.path.name == E2E_MODULE else rank.get(item.path.name, last),
            order[id(item)],
        )
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    job = config.stash.get(E2E_JOB, None)
    if job is not None:
        process, directory = job
        if process.poll() is None:
            process.kill()
            process.wait()
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
