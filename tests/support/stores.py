"""Stores the tests build: from osquery result lines, or a scratch copy of a module's
base store (built once per module, copied per test)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from rarenet.baseline.config import load_config
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.store import Store


def opened_copy(base: Path, tmp_path: Path) -> Iterator[Store]:
    """Copy `base` into `tmp_path` and yield it opened (a test may change it freely)."""
    copy = tmp_path / base.name
    shutil.copy(base, copy)
    with Store(copy) as opened:
        yield opened


def ingest_lines(store: Store, lines: Iterable[bytes], log: Path) -> None:
    """Write `lines` to the file `log` and ingest it with the default settings; a line
    rejected fails the test."""
    log.write_bytes(b"".join(lines))
    report = Ingester(store, load_config(None, env={})).ingest([str(log)])
    assert report.rejected == 0, report.errors


def store_of_lines(directory: Path, lines: Iterable[bytes]) -> Path:
    """A new store (`directory`/fleet.db) holding `lines`, through fleet.log beside it."""
    db = directory / "fleet.db"
    with Store(db) as store:
        ingest_lines(store, lines, directory / "fleet.log")
    return db
