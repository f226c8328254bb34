"""A scratch copy of a module's base store: built once per module, copied per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from rarenet.baseline.store import Store


def opened_copy(base: Path, tmp_path: Path) -> Iterator[Store]:
    """Copy `base` into `tmp_path` and yield it opened (a test may change it freely)."""
    copy = tmp_path / base.name
    shutil.copy(base, copy)
    with Store(copy) as opened:
        yield opened
