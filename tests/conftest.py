"""Shared fixtures: real-shaped osquery result lines and temporary stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from baseline.config import Config, load_config
from baseline.store import Store


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
