"""The SQLite store (WAL): observations, presence, quarantine, checkpoints, runs, signals."""

from rarenet.baseline.store.store import Checkpoint, Store, StoreSummary, contains

__all__ = ["Checkpoint", "Store", "StoreSummary", "contains"]
