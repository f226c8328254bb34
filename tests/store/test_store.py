"""The store: WAL, migrations recorded and idempotent, upgrades keep data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rarenet.baseline.errors import StoreError
from rarenet.baseline.store import Store
from rarenet.baseline.store.migrations import MIGRATIONS, applied, migrate


def test_new_store_is_wal_and_fully_migrated(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
        tables = {
            r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert {
        "observations",
        "presence",
        "quarantine",
        "checkpoints",
        "runs",
        "signals",
        "deliveries",
        "exceptions",
    } <= tables


def test_migrating_twice_applies_nothing(tmp_path: Path) -> None:
    Store(tmp_path / "r.db").close()
    conn = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    assert migrate(conn) == []
    assert len(applied(conn)) == len(MIGRATIONS)


def test_upgrade_keeps_existing_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, upto="0001_initial") == ["0001_initial"]
    conn.execute(
        "INSERT INTO observations (time, host, host_uuid, name, path, pid, digest) "
        "VALUES (1767571260, 'web-1', '', 'curl', '/usr/bin/curl', 10, 42)"
    )
    conn.execute("INSERT INTO quarantine (source, line, reason) VALUES ('a.log', 3, 'bad')")
    conn.close()
    with Store(path) as store:
        assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
        assert store.conn.execute("SELECT host, name, digest FROM observations").fetchall() == [
            ("web-1", "curl", 42)
        ]
        assert store.summary().quarantined == 1
        store.conn.execute("SELECT count(*) FROM presence").fetchone()


def test_upgrade_to_shell_destinations_fills_them_from_presence(tmp_path: Path) -> None:
    """0010 fills `shell_destination` from what presence already holds (shells only)."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, upto="0009_signal_acks")
    rows = [
        (1, 1767571260, "db-1", "bash", "/usr/bin/bash", "10.0.0.9"),
        (2, 1767572200, "db-1", "bash", "/usr/bin/bash", "10.0.0.9"),
        (3, 1767571300, "web-1", "curl", "/usr/bin/curl", "203.0.113.80"),
        (4, 1767571400, "web-1", "sh", "/bin/sh", "0.0.0.0"),  # listening: no destination
    ]
    for oid, time_, host, name, exe, remote in rows:
        conn.execute(
            "INSERT INTO observations (id, time, host, name, path, remote_address, digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (oid, time_, host, name, exe, remote, oid),
        )
        conn.execute(
            "INSERT INTO presence (span, bucket, host, name, path, connections, first_time, "
            "last_time, first_id) VALUES (900, ?, ?, ?, ?, 1, ?, ?, ?)",
            (time_ // 900 * 900, host, name, exe, time_, time_, oid),
        )
    conn.close()
    with Store(path) as store:
        assert store.conn.execute("SELECT * FROM shell_destination").fetchall() == [
            (900, "bash", "10.0.0.9", 1767571200, 1767572100)
        ]


def test_failed_step_leaves_the_previous_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rarenet.baseline.store.migrations as migrations

    def broken(db: object) -> None:
        db.execute("CREATE TABLE half_done (x)")  # type: ignore[attr-defined]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, ("0099_broken", broken)])
    conn = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    with pytest.raises(RuntimeError):
        migrate(conn)
    assert applied(conn) == [name for name, _ in MIGRATIONS]
    assert (
        conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0]
        == 0
    )


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not sqlite " * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(bogus)


def test_prune_observations(empty_store: Store) -> None:
    empty_store.conn.executemany(
        "INSERT INTO observations (time, host, host_uuid, name, path, digest) VALUES (?, 'h', '', 'n', 'p', ?)",
        [(t, t) for t in (100, 200, 300)],
    )
    assert empty_store.prune_observations(older_than=250) == 2
    assert empty_store.summary().observations == 1


def test_checkpoints_can_be_left_to_the_caller(tmp_path: Path) -> None:
    """A service turns automatic checkpoints off (they would run inside a request's
    commit) and copies the WAL into the database from its own job."""
    path = tmp_path / "r.db"
    with Store(path, autocheckpoint=False) as store:
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for chunk in range(3):
            with store.transaction() as conn:
                conn.executemany(
                    "INSERT INTO observations (time, host, host_uuid, name, path, digest) "
                    "VALUES (?, 'h', '', 'n', 'p', ?)",
                    [(t, t) for t in range(chunk * 2000, (chunk + 1) * 2000)],
                )
        wal = path.with_name("r.db-wal").stat().st_size
        assert wal > 4096 * 100  # no checkpoint ran on commit
        frames, copied = store.wal_checkpoint()
        assert frames > 0 and copied == frames
    with Store(path) as store:
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert store.summary().observations == 6000


def test_quarantine_keeps_at_most_its_cap_per_source_and_counts_the_rest(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rarenet.baseline.store.store as store_module
    from rarenet.baseline.ingest.model import Reject

    monkeypatch.setattr(store_module, "QUARANTINE_PER_SOURCE", 5)
    rejects = [Reject(n, "not valid JSON", f"bad {n}".encode(), 5) for n in range(1, 5)]
    with empty_store.transaction():
        assert empty_store.quarantine_rejects("http:10.0.0.1", rejects, dropped=100) == 4
    with empty_store.transaction():
        fresh = [Reject(n, "not valid JSON", f"other {n}".encode(), 7) for n in range(1, 5)]
        assert empty_store.quarantine_rejects("http:10.0.0.1", fresh) == 1  # room for one more
        assert empty_store.quarantine_rejects("file:/var/log/a.log", rejects) == 4  # its own cap
    summary = empty_store.summary()
    assert summary.quarantined == 9
    assert summary.quarantine_dropped == 100 + 3
    overflow = dict(empty_store.conn.execute("SELECT source, dropped FROM quarantine_overflow"))
    assert overflow == {"http:10.0.0.1": 103}


def test_quarantine_is_pruned_by_retention(empty_store: Store) -> None:
    import time

    from rarenet.baseline.config import Config
    from rarenet.baseline.detect.maintenance import prune_once
    from rarenet.baseline.ingest.model import Reject

    with empty_store.transaction():
        empty_store.quarantine_rejects("old", [Reject(1, "x", b"old", 3)], dropped=7)
        empty_store.quarantine_rejects("new", [Reject(1, "x", b"new", 3)])
    month = 31 * 86400
    empty_store.conn.execute(
        "UPDATE quarantine SET received_at = received_at - ? WHERE source = 'old'", (month,)
    )
    empty_store.conn.execute(
        "UPDATE quarantine_overflow SET last_at = last_at - ? WHERE source = 'old'", (month,)
    )
    pruned = prune_once(empty_store, Config(), now=int(time.time()))
    assert pruned.quarantine == 1
    assert [r[0] for r in empty_store.conn.execute("SELECT source FROM quarantine")] == ["new"]
    assert empty_store.summary().quarantine_dropped == 0
