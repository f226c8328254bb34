"""SIGKILL `rarenet serve` during a storm of concurrent posts: every row acknowledged
with a 200 is in the store exactly once after a restart, and the store is intact."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests
from support.osquery_lines import T0, event, fleet_body, socket_row
from support.serve_process import ServerProcess

pytestmark = pytest.mark.slow
CLIENTS = 8
ROWS_PER_BODY = 200


def body(client: int, number: int) -> bytes:
    """A Fleet body whose rows exist nowhere else (host and port name the post)."""
    host = f"crash-{client}-{number}"
    details = [
        event(socket_row(pid=100 + i, remote_port=1 + i), host=host, unix=T0 + number)
        for i in range(ROWS_PER_BODY)
    ]
    return orjson.dumps(fleet_body(details))


def stored_per_host(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(conn.execute("SELECT host, count(*) FROM observations GROUP BY host"))
    finally:
        conn.close()


def test_sigkill_mid_storm_keeps_every_acknowledged_row_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    acknowledged: set[str] = set()
    sent: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def storm(client: int) -> None:
        session = requests.Session()
        session.headers.update(server.headers())
        for number in range(100_000):
            if stop.is_set():
                return
            with lock:
                sent.add(f"crash-{client}-{number}")
            try:
                response = session.post(
                    server.url + "/v1/ingest", data=body(client, number), timeout=30
                )
            except requests.RequestException:
                return  # the server died under us: this post is not acknowledged
            if response.status_code == 200:
                assert response.json()["accepted"] == ROWS_PER_BODY
                with lock:
                    acknowledged.add(f"crash-{client}-{number}")

    with server:
        threads = [threading.Thread(target=storm, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 40:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.01)
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

    in_flight = sent - acknowledged
    assert in_flight, "the kill landed between posts: nothing was in flight"
    stored = stored_per_host(server.db)
    for host in acknowledged:
        assert stored.get(host) == ROWS_PER_BODY, f"{host} acknowledged but not stored whole"
    for host in in_flight:  # unacknowledged: all of it or none (one transaction)
        assert stored.get(host, 0) in (0, ROWS_PER_BODY)

    # Restart and post everything again: acknowledged bodies are pure duplicates.
    with server:  # starts it again, on the same store
        session = requests.Session()
        session.headers.update(server.headers())
        for host in sorted(sent):
            client, number = (int(part) for part in host.split("-")[1:])
            result = session.post(server.url + "/v1/ingest", data=body(client, number)).json()
            if host in acknowledged:
                assert (result["accepted"], result["duplicates"]) == (0, ROWS_PER_BODY)
        assert server.stop() == 0
    final = stored_per_host(server.db)
    assert set(final) == sent and set(final.values()) == {ROWS_PER_BODY}
