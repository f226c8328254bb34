"""Fixtures of the detection tests: the end-to-end backtest's results once its
background job (started by tests/conftest.py) has finished."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import e2e_backtest


@pytest.fixture(scope="session")
def e2e_backtest_dir() -> Path:
    """The directory with the e2e fleet, its labels and `result.json` (see
    support/e2e_backtest.py), once the run's background job has finished."""
    where = os.environ.get(e2e_backtest.DIR_VARIABLE)
    assert where, "the end-to-end job was not started (run the module by its path)"
    return e2e_backtest.wait(Path(where))
