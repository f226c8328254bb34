"""Presence aggregates answer window questions exactly, whatever order buckets arrive in,
across folds, late data and pruning: a host's activity (`host_bucket.seq`) and the
distinct hosts of a path or name (`key_host` + one seek per host)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rarenet.baseline.detect.presence import (
    host_activity_sql,
    hosts_in_window,
    prune_presence,
    refresh_presence,
)
from rarenet.baseline.store import Store
from rarenet.baseline.store.migrations import migrate

SPAN = 10
HOSTS = ("a", "b", "c", "d")
# Two paths share the name "curl": the name's host set is the union of theirs.
BINARIES = (
    ("curl", "/usr/bin/curl"),
    ("curl", "/tmp/curl"),
    ("curl", ""),  # path unknown
    ("nc", "/usr/bin/nc"),
    ("x", "/tmp/curl"),  # one path under two names
    ("x", ""),
)

Event = tuple[str, int, int]  # host, binary index, bucket


def _insert(store: Store, rows: list[Event]) -> None:
    start = store.conn.execute("SELECT coalesce(max(digest), 0) + 1 FROM observations").fetchone()
    store.conn.executemany(
        "INSERT INTO observations (time, host, host_uuid, name, path, digest) "
        "VALUES (?, ?, '', ?, ?, ?)",
        [
            (bucket * SPAN + 3, host, *BINARIES[binary], start[0] + i)
            for i, (host, binary, bucket) in enumerate(rows)
        ],
    )


def _activity(store: Store, host: str, bucket: int, low: int) -> int:
    sql = f"SELECT {host_activity_sql(':host', ':bucket', ':low')}"
    params = {"span": SPAN, "host": host, "bucket": bucket * SPAN, "low": low * SPAN}
    return int(store.conn.execute(sql, params).fetchone()[0])


batches = st.lists(
    st.lists(
        st.tuples(st.sampled_from(HOSTS), st.integers(0, len(BINARIES) - 1), st.integers(0, 40)),
        max_size=30,
    ),
    min_size=1,
    max_size=5,
)
windows = st.lists(
    st.tuples(st.integers(0, 45), st.integers(1, 25)).map(lambda w: (w[0], w[0] + w[1])),
    min_size=1,
    max_size=8,
)


def _fill(path: Path, batches: list[list[Event]], prune_at: int) -> tuple[Store, set[Event]]:
    """Fold batch by batch (each may hold buckets older than stored ones), pruning midway;
    return the store and the events it should still know about."""
    store = Store(path)
    seen: set[Event] = set()
    for number, batch in enumerate(batches):
        _insert(store, batch)
        refresh_presence(store, SPAN)
        seen |= set(batch)
        if number == len(batches) // 2:
            prune_presence(store, SPAN, prune_at * SPAN)
            seen = {event for event in seen if event[2] >= prune_at}
    return store, seen


@settings(max_examples=80, deadline=None)
@given(batches=batches, prune_at=st.integers(0, 20), windows=windows)
def test_host_activity_matches_a_brute_force_count(
    tmp_path_factory: object,
    batches: list[list[Event]],
    prune_at: int,
    windows: list[tuple[int, int]],
) -> None:
    path = tmp_path_factory.mktemp("seq") / "r.db"  # type: ignore[attr-defined]
    store, seen = _fill(path, batches, prune_at)
    with store:
        for host in HOSTS:
            for low, high in windows:
                expected = len({b for h, _, b in seen if h == host and low <= b < high})
                assert _activity(store, host, high, low) == expected, (host, low, high)


@settings(max_examples=80, deadline=None)
@given(batches=batches, prune_at=st.integers(0, 20), windows=windows, cap=st.integers(1, 5))
def test_hosts_in_window_matches_a_brute_force_count(
    tmp_path_factory: object,
    batches: list[list[Event]],
    prune_at: int,
    windows: list[tuple[int, int]],
    cap: int,
) -> None:
    path = tmp_path_factory.mktemp("keys") / "r.db"  # type: ignore[attr-defined]
    store, seen = _fill(path, batches, prune_at)
    with store:
        keys = [("path", path) for _, path in BINARIES if path] + [
            ("name", n) for n in ("curl", "nc", "x")
        ]
        for kind, key in keys:
            column = 1 if kind == "path" else 0
            for low, high in windows:
                users = {h for h, i, b in seen if BINARIES[i][column] == key and low <= b < high}
                got = hosts_in_window(store.conn, SPAN, kind, key, low * SPAN, high * SPAN, cap)
                assert got == min(len(users), cap), (kind, key, low, high)


def test_upgrade_numbers_existing_host_buckets_and_key_hosts(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, upto="0003_delivery_attempts")
    conn.executemany(
        "INSERT INTO host_bucket (span, host, bucket) VALUES (?, ?, ?)",
        [(SPAN, "a", 30), (SPAN, "a", 10), (SPAN, "b", 20), (SPAN, "a", 50)],
    )
    conn.executemany(
        "INSERT INTO presence VALUES (?, ?, ?, 'curl', '/usr/bin/curl', 1, 0, 0, 1)",
        [(SPAN, 10, "a"), (SPAN, 50, "a"), (SPAN, 20, "b")],
    )
    conn.close()
    with Store(path) as store:
        rows = store.conn.execute(
            "SELECT host, bucket, seq FROM host_bucket ORDER BY 1, 2"
        ).fetchall()
        assert rows == [("a", 10, 1), ("a", 30, 2), ("a", 50, 3), ("b", 20, 1)]
        assert _activity(store, "a", 6, 2) == 2  # buckets 30 and 50 of [20, 60)
        assert store.conn.execute(
            "SELECT kind, host, first_bucket, last_bucket FROM key_host ORDER BY 1, 2"
        ).fetchall() == [
            ("name", "a", 10, 50),
            ("name", "b", 20, 20),
            ("path", "a", 10, 50),
            ("path", "b", 20, 20),
        ]
        assert hosts_in_window(store.conn, SPAN, "name", "curl", 30, 60, 10) == 1


def test_a_binary_with_unknown_path_is_known_to_its_host_by_name(tmp_path: Path) -> None:
    """Without a path, "has this host used it before" goes by name, over every path the
    name was seen with (through `name_path`), and counts this host's rows only."""
    from rarenet.baseline.detect.features import gather

    span, history = 900, 14 * 86400
    rows: list[tuple[int, str, str, str]] = []
    for bucket in range(40):  # curl with a known path on 10 hosts; agentx, path unknown, on a
        rows += [(bucket, host, "curl", "/usr/bin/curl") for host in "abcdefghij"]
        if bucket % 4 == 0:
            rows.append((bucket, "a", "agentx", ""))
    rows += [(40, "a", "curl", ""), (40, "a", "agentx", ""), (40, "b", "agentx", "")]
    with Store(tmp_path / "r.db") as store:
        store.conn.executemany(
            "INSERT INTO observations (time, host, host_uuid, name, path, digest) "
            "VALUES (?, ?, '', ?, ?, ?)",
            [(b * span + 5, h, n, p, i) for i, (b, h, n, p) in enumerate(rows)],
        )
        refresh_presence(store, span)
        gathered = gather(store, span, history, [40 * span], warmup=1)
        found = {
            (c.host, c.name): gathered.features.host_path_buckets[i]
            for i, c in enumerate(gathered.candidates)
        }
    assert found[("a", "curl")] == 1  # routine name: "used before" (by its known path)
    assert found[("a", "agentx")] == 10  # rare: its 10 earlier buckets on this host
    assert found[("b", "agentx")] == 0  # never on b


def test_destinations_are_folded_per_outbound_address_port_and_host(tmp_path: Path) -> None:
    """`destination_host` holds every outbound connection's address and port per host
    (not only a bucket's first), never an inbound client or an unset address, in any
    arrival order, and is pruned with presence."""
    rows = [  # host, bucket, remote, port, direction
        ("a", 5, "192.0.2.1", 443, "outbound"),
        ("a", 5, "192.0.2.2", 443, "outbound"),  # the bucket's second connection
        ("b", 9, "192.0.2.1", 443, "outbound"),
        ("b", 2, "192.0.2.1", 443, "outbound"),  # late: an earlier bucket
        ("c", 3, "198.51.100.7", 51000, "inbound"),  # a client: no destination
        ("c", 4, "0.0.0.0", 0, "outbound"),  # unset
    ]
    with Store(tmp_path / "d.db") as store:
        for n, (host, bucket, remote, port, direction) in enumerate(rows):
            store.conn.execute(
                "INSERT INTO observations (time, host, host_uuid, name, path, digest, "
                "remote_address, remote_port, direction) VALUES (?, ?, '', 'x', '/x', ?, ?, ?, ?)",
                (bucket * SPAN + 1, host, n, remote, port, direction),
            )
            refresh_presence(store, SPAN)
        found = store.conn.execute(
            "SELECT remote, port, host, first_bucket, last_bucket FROM destination_host "
            "ORDER BY remote, host"
        ).fetchall()
        assert found == [
            ("192.0.2.1", 443, "a", 50, 50),
            ("192.0.2.1", 443, "b", 20, 90),
            ("192.0.2.2", 443, "a", 50, 50),
        ]
        prune_presence(store, SPAN, 60)
        assert store.conn.execute("SELECT host FROM destination_host").fetchall() == [("b",)]


def test_users_are_folded_per_host_and_binary(tmp_path: Path) -> None:
    """`binary_user` holds who ran each binary on each host, with first and last bucket
    (no user: ""), and answers "did this user run it in the window, and who did"."""
    from rarenet.baseline.detect.binary_users import users_before

    rows = [("a", 5, "www-data"), ("a", 7, "root"), ("a", 2, "www-data"), ("b", 3, None)]
    with Store(tmp_path / "u.db") as store:
        for n, (host, bucket, user) in enumerate(rows):
            store.conn.execute(
                "INSERT INTO observations (time, host, host_uuid, name, path, digest, username) "
                "VALUES (?, ?, '', 'nc', '/usr/bin/nc', ?, ?)",
                (bucket * SPAN + 1, host, n, user),
            )
            refresh_presence(store, SPAN)
        found = store.conn.execute(
            "SELECT host, user, first_bucket, last_bucket FROM binary_user ORDER BY host, user"
        ).fetchall()
        assert found == [("a", "root", 70, 70), ("a", "www-data", 20, 50), ("b", "", 30, 30)]
        asks = [
            ["a", "nc", "/usr/bin/nc", "root", 0, 60],  # root only from bucket 70 on
            ["a", "nc", "/usr/bin/nc", "www-data", 0, 80],
        ]
        assert users_before(store.conn, SPAN, asks) == [
            [False, ["www-data"]],
            [True, ["root", "www-data"]],
        ]
