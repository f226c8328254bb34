"""`GET /v1/snapshot?host=H`: the fleet part cached per detection run, the host part per
request, and a strong ETag over the exact bytes served.

Building the fleet part (`fleet_snapshot`) reads every presence row of the window —
seconds at large fleets — so it is built once per detection run (once an extension has
asked for one, the scheduler rebuilds it right after each run) and reused until the next. A host's own counts
(`host_snapshot`) come from indexed queries. The ETag is a hash of the body, so an extension that already holds the
current snapshot gets a 304 and no body.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.snapshot import fleet_snapshot, host_snapshot
from rarenet.baseline.store import Store

MAX_REMEMBERED = 200_000  # hosts whose last ETag is remembered between runs


@dataclass(frozen=True)
class Snapshot:
    etag: str  # quoted, strong
    body: bytes  # empty when not_modified
    not_modified: bool = False


@dataclass(frozen=True)
class _Fleet:
    key: int  # the detection run it was built after (0: before any run)
    document: dict[str, Any]


class SnapshotCache:
    """The fleet snapshot of the latest detection run, shared by all requests."""

    def __init__(self, settings: DetectSettings) -> None:
        self.settings = settings
        self._fleet: _Fleet | None = None
        self._lock = threading.Lock()
        self.builds = 0
        self.requested = False  # rebuilt after each run only once someone asks for it
        # The ETag last served per host since the fleet part was built: a matching
        # If-None-Match is answered 304 without a query until the next run.
        self._etags: dict[str, str] = {}

    def refresh(self, store: Store) -> None:
        """Rebuild the fleet part if a detection run happened since it was built."""
        key = _latest_run(store)
        if self._fleet is not None and self._fleet.key == key:
            return
        with self._lock:
            if self._fleet is not None and self._fleet.key == key:
                return
            document = fleet_snapshot(store, self.settings)
            self._etags = {}
            self._fleet = _Fleet(key, document)
            self.builds += 1

    def get(self, store: Store, host: str | None, if_none_match: str | None = None) -> Snapshot:
        """The snapshot document for `host` (fleet-only without one), or `not_modified`
        when the client already holds what was last served for that host."""
        self.requested = True
        self.refresh(store)
        fleet = self._fleet
        assert fleet is not None
        served = self._etags.get(host or "")
        if served is not None and etag_matches(if_none_match, served):
            return Snapshot(served, b"", not_modified=True)
        document = fleet.document
        if host is not None:
            document = host_snapshot(store, self.settings, fleet.document, host)
        body = orjson.dumps(document)
        etag = f'"{hashlib.sha256(body).hexdigest()[:40]}"'
        if self._fleet is fleet:
            if len(self._etags) >= MAX_REMEMBERED:
                self._etags.clear()
            self._etags[host or ""] = etag
        return Snapshot(etag, body, not_modified=etag_matches(if_none_match, etag))


def _latest_run(store: Store) -> int:
    return int(store.conn.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()[0])


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match (weak comparison): `*` or any listed tag equal to ours."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
