"""queries/*.sql against osquery's real table schema (5.23.1) and fixture rows.

An in-memory SQLite database gets one table per osquery table (every column, hidden
ones included, with the SQLite affinity of its osquery type). Each query is then
prepared (EXPLAIN: every table and column must exist, on Linux) and run over fixture
rows that prove its filters, joins and `direction`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.osquery_schema import Schema, create_tables, osquery_schema

from rarenet.baseline.packs import Query, load_queries
from rarenet.baseline.packs.queries import load_query
from rarenet.extension.collector import COLUMNS as COLLECTOR_COLUMNS
from rarenet.extension.tables import SOCKET_TYPES

QUERIES_DIR = ROOT / "queries"
OPEN_SOCKETS_COLUMNS = [
    "pid", "fd", "socket", "family", "protocol", "local_address", "local_port",
    "remote_address", "remote_port", "state", "net_namespace", "name", "path", "cmdline",
    "cwd", "uid", "username", "parent", "parent_name", "parent_path", "parent_cmdline",
    "grandparent", "grandparent_name", "grandparent_path", "grandparent_cmdline",
    "great_grandparent", "great_grandparent_name", "great_grandparent_path",
    "great_grandparent_cmdline", "direction",
]  # fmt: skip
SOCKET_EVENTS_COLUMNS = [
    "action", "pid", "fd", "family", "protocol", "local_address", "local_port",
    "remote_address", "remote_port", "path", "auid", "time", "status", "success", "direction",
]  # fmt: skip


@pytest.fixture(scope="module")
def schema() -> Schema:
    return osquery_schema()


@pytest.fixture
def db(schema: Schema) -> Iterator[sqlite3.Connection]:
    conn = create_tables(sqlite3.connect(":memory:"), schema)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def queries() -> dict[str, Query]:
    return {query.name: query for query in load_queries(QUERIES_DIR)}


def prepare(conn: sqlite3.Connection, schema: Schema, query: Query) -> set[tuple[str, str]]:
    """EXPLAIN the query; return the (table, column) pairs it reads.

    Fails with the query's file name when a table or column does not exist, or when
    one is not available on Linux according to the schema.
    """
    reads: set[tuple[str, str]] = set()

    def authorizer(action: int, table: str | None, column: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_READ and table and column:
            reads.add((table, column))
        return sqlite3.SQLITE_OK

    conn.set_authorizer(authorizer)
    try:
        conn.execute("EXPLAIN " + query.sql).fetchall()
    except sqlite3.Error as exc:
        raise AssertionError(f"{query.path}: {exc}") from None
    finally:
        conn.set_authorizer(None)
    for table, column in sorted(reads):
        spec = schema[table]
        if "linux" not in spec["platforms"]:
            raise AssertionError(f"{query.path}: table {table} is not available on linux")
        platforms = next(c.get("platforms") for c in spec["columns"] if c["name"] == column)
        if platforms is not None and "linux" not in platforms:
            raise AssertionError(f"{query.path}: column {table}.{column} is not on linux")
    return reads


def insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        names = ", ".join(f'"{key}"' for key in row)
        marks = ", ".join("?" for _ in row)
        conn.execute(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', list(row.values()))


def run(conn: sqlite3.Connection, query: Query) -> tuple[list[str], list[dict[str, Any]]]:
    cursor = conn.execute(query.sql)
    columns = [item[0] for item in cursor.description]
    return columns, [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def query_files() -> list[Path]:
    return sorted(QUERIES_DIR.glob("*.sql"))


# -- every query: real tables and columns, on linux ---------------------------------


@pytest.mark.parametrize("path", query_files(), ids=lambda p: p.name)
def test_query_prepares_against_osquery_schema(
    path: Path, db: sqlite3.Connection, schema: Schema
) -> None:
    reads = prepare(db, schema, load_query(path))
    assert reads, f"{path}: reads no osquery column"


def test_the_pack_has_the_contract_queries(queries: dict[str, Query]) -> None:
    assert {"rarenet_open_sockets", "rarenet_socket_events"} <= set(queries)
    assert queries["rarenet_socket_events"].optional
    assert not queries["rarenet_open_sockets"].optional


@pytest.mark.parametrize(
    ("name", "sql", "error"),
    [
        (
            "broken_query",
            "SELECT s.no_such_column FROM process_open_sockets AS s;",
            r"broken_query\.sql: no such column: s\.no_such_column",
        ),
        ("no_table", "SELECT pid FROM bpf_socket_events_v2;", r"no_table\.sql: no such table"),
        (
            "windows_only",
            "SELECT executable FROM appcompat_shims;",
            r"windows_only\.sql: table appcompat_shims is not",
        ),
    ],
    ids=["unknown column", "unknown table", "windows-only table"],
)
def test_a_query_osquery_cannot_run_on_linux_fails_naming_the_file(
    tmp_path: Path, db: sqlite3.Connection, schema: Schema, name: str, sql: str, error: str
) -> None:
    path = _query_file(tmp_path, name, sql)
    with pytest.raises(AssertionError, match=error):
        prepare(db, schema, load_query(path))


def _query_file(folder: Path, name: str, sql: str) -> Path:
    path = folder / f"{name}.sql"
    path.write_text(
        "-- @interval: 60\n-- @platform: linux\n-- @description: test\n"
        f"-- @min_osquery_version: 5.0.0\n{sql}\n",
        encoding="utf-8",
    )
    return path


# -- rarenet_open_sockets over fixture rows ------------------------------------------

PROCESSES = [
    (1, "systemd", 0, 0),
    (100, "nginx", 1, 0),
    (101, "bash", 100, 33),
    (200, "sshd", 1, 0),
    (300, "dnsmasq", 1, 0),
    (400, "curl", 9999, 4242),  # parent gone, uid without a users row
    (500, "python3", 1, 1000),
]
USERS = [(0, "root"), (33, "www-data"), (1000, "alice")]
LISTENING = [(200, 22, 6), (300, 53, 17), (999, 8080, 6)]


def _socket(fd: int, pid: int, remote: str, rport: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "pid": pid, "fd": fd, "socket": 10_000 + fd, "family": 2, "protocol": 6,
        "local_address": "10.0.0.5", "local_port": 40_000 + fd, "remote_address": remote,
        "remote_port": rport, "path": "", "state": "ESTABLISHED", "net_namespace": "4026531840",
    }  # fmt: skip
    row.update(extra)
    return row


# fd is the case id: the expected direction for kept rows, the reason for dropped ones.
KEPT = {
    10: ("outbound", _socket(10, 101, "203.0.113.5", 4444)),
    11: ("inbound", _socket(11, 200, "198.51.100.7", 51000, local_port=22)),
    12: ("outbound", _socket(12, 300, "192.0.2.1", 33333, local_port=53)),  # listens on UDP 53 only
    13: ("outbound", _socket(13, 500, "192.0.2.2", 1234, local_port=8080)),  # another pid listens
    14: ("outbound", _socket(14, 400, "2001:db8::1", 443, family=10)),
    15: ("outbound", _socket(15, 500, "8.8.8.8", 53, protocol=17, state=None)),
    16: ("outbound", _socket(16, 500, "::ffff:203.0.113.9", 443, family=10, protocol=17, state="")),
}
DROPPED = {
    20: ("loopback 127.0.0.1", _socket(20, 500, "127.0.0.1", 5432)),
    21: ("loopback 127.0.0.53", _socket(21, 500, "127.0.0.53", 53, protocol=17, state="")),
    22: ("IPv6 loopback ::1", _socket(22, 500, "::1", 8080, family=10)),
    23: ("v4-mapped loopback", _socket(23, 500, "::ffff:127.0.0.1", 8080, family=10)),
    24: ("unspecified peer ''", _socket(24, 500, "", 0, state="")),
    25: (
        "unspecified 0.0.0.0 LISTEN",
        _socket(25, 200, "0.0.0.0", 0, local_port=22, state="LISTEN"),
    ),
    26: ("unspecified :: LISTEN", _socket(26, 200, "::", 0, family=10, state="LISTEN")),
    27: ("pid -1 (no owner)", _socket(27, -1, "203.0.113.5", 80)),
    28: (
        "unix socket",
        _socket(28, 500, "203.0.113.7", 99, family=1, protocol=0, path="/run/x.sock"),
    ),
    29: ("LISTEN state", _socket(29, 500, "203.0.113.8", 9, state="LISTEN")),
    30: ("unspecified 0.0.0.0 with port", _socket(30, 500, "0.0.0.0", 443)),
    31: ("unspecified :: with port", _socket(31, 500, "::", 443, family=10)),
    32: ("remote port 0", _socket(32, 500, "203.0.113.10", 0)),
    33: ("process already gone", _socket(33, 77777, "203.0.113.11", 443)),
}


@pytest.fixture
def open_sockets(db: sqlite3.Connection, queries: dict[str, Query]) -> dict[int, dict[str, Any]]:
    insert(
        db,
        "processes",
        [
            {"pid": pid, "name": name, "parent": parent, "uid": uid, "path": f"/usr/bin/{name}",
             "cmdline": f"{name} --flag", "cwd": "/"}
            for pid, name, parent, uid in PROCESSES
        ],
    )  # fmt: skip
    insert(db, "users", [{"uid": uid, "username": name} for uid, name in USERS])
    insert(db, "listening_ports", [{"pid": p, "port": o, "protocol": t} for p, o, t in LISTENING])
    insert(db, "process_open_sockets", [row for _, row in (*KEPT.values(), *DROPPED.values())])
    columns, rows = run(db, queries["rarenet_open_sockets"])
    assert columns == OPEN_SOCKETS_COLUMNS
    return {row["fd"]: row for row in rows}


def test_open_sockets_output_columns_are_the_contract(
    db: sqlite3.Connection, queries: dict[str, Query]
) -> None:
    columns, rows = run(db, queries["rarenet_open_sockets"])
    assert columns == OPEN_SOCKETS_COLUMNS
    assert rows == []
    # the /proc collector and the extension's table give the same columns, in order
    assert list(COLLECTOR_COLUMNS) == columns == list(SOCKET_TYPES)


def test_open_sockets_keeps_exactly_the_remote_inet_sockets(
    open_sockets: dict[int, dict[str, Any]],
) -> None:
    assert sorted(open_sockets) == sorted(KEPT)


@pytest.mark.parametrize("fd", sorted(DROPPED), ids=lambda fd: DROPPED[fd][0])
def test_open_sockets_drops(fd: int, open_sockets: dict[int, dict[str, Any]]) -> None:
    assert fd not in open_sockets, DROPPED[fd][0]


@pytest.mark.parametrize("fd", sorted(KEPT))
def test_open_sockets_direction(fd: int, open_sockets: dict[int, dict[str, Any]]) -> None:
    assert open_sockets[fd]["direction"] == KEPT[fd][0]


def test_open_sockets_joins_process_parent_and_user(
    open_sockets: dict[int, dict[str, Any]],
) -> None:
    shell = open_sockets[10]
    assert (shell["name"], shell["path"], shell["cmdline"], shell["cwd"]) == (
        "bash", "/usr/bin/bash", "bash --flag", "/",
    )  # fmt: skip
    assert (shell["uid"], shell["username"], shell["parent"], shell["parent_name"]) == (
        33, "www-data", 100, "nginx",
    )  # fmt: skip
    assert (shell["remote_address"], shell["remote_port"], shell["state"]) == (
        "203.0.113.5", 4444, "ESTABLISHED",
    )  # fmt: skip


def test_open_sockets_missing_parent_and_user_are_empty(
    open_sockets: dict[int, dict[str, Any]],
) -> None:
    orphan = open_sockets[14]
    assert (orphan["parent"], orphan["parent_name"]) == (9999, "")
    assert (orphan["uid"], orphan["username"]) == (4242, "")
    # nothing above a parent that is gone: '' texts, -1 pids, as the LEFT JOINs leave them
    assert [orphan[column] for column in OPEN_SOCKETS_COLUMNS[19:-1]] == [
        "", "", -1, "", "", "", -1, "", "", "",
    ]  # fmt: skip


def test_open_sockets_joins_three_ancestors(open_sockets: dict[int, dict[str, Any]]) -> None:
    shell = open_sockets[10]  # bash 101 < nginx 100 < systemd 1 < pid 0 (no process)
    assert (shell["parent"], shell["parent_name"], shell["parent_path"]) == (
        100, "nginx", "/usr/bin/nginx",
    )  # fmt: skip
    assert shell["parent_cmdline"] == "nginx --flag"
    assert (shell["grandparent"], shell["grandparent_name"], shell["grandparent_path"]) == (
        1, "systemd", "/usr/bin/systemd",
    )  # fmt: skip
    assert shell["grandparent_cmdline"] == "systemd --flag"
    assert (shell["great_grandparent"], shell["great_grandparent_name"]) == (0, "")
    assert (shell["great_grandparent_path"], shell["great_grandparent_cmdline"]) == ("", "")
    below_init = open_sockets[11]  # sshd 200 < systemd 1 < 0
    assert (below_init["parent_name"], below_init["grandparent"]) == ("systemd", 0)
    assert (below_init["grandparent_name"], below_init["great_grandparent"]) == ("", -1)


# -- rarenet_socket_events over fixture rows -----------------------------------------


def _event(time: int, action: str, remote: str, rport: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "action": action, "pid": 101, "path": "/usr/bin/bash", "fd": "3", "auid": 33,
        "family": 2, "protocol": 6, "local_address": "10.0.0.5", "local_port": 40000,
        "remote_address": remote, "remote_port": rport, "time": time, "status": "succeeded",
        "success": 1,
    }  # fmt: skip
    row.update(extra)
    return row


EVENTS_KEPT = {
    1: ("outbound", _event(1, "connect", "203.0.113.5", 4444)),
    2: ("inbound", _event(2, "accept", "198.51.100.7", 51000, pid=200, local_port=22)),
    3: ("outbound", _event(3, "connect", "2001:db8::2", 443, family=10, status="in_progress")),
}
EVENTS_DROPPED = {
    10: ("bind", _event(10, "bind", "", 0)),
    11: ("bind with address", _event(11, "bind", "203.0.113.5", 80)),
    12: ("unix family", _event(12, "connect", "203.0.113.5", 80, family=1)),
    13: ("loopback 127.0.0.1", _event(13, "connect", "127.0.0.1", 5432)),
    14: ("loopback 127.0.0.53", _event(14, "connect", "127.0.0.53", 53)),
    15: ("IPv6 loopback", _event(15, "connect", "::1", 80, family=10)),
    16: ("v4-mapped loopback", _event(16, "connect", "::ffff:127.0.0.1", 80, family=10)),
    17: ("pid -1", _event(17, "connect", "203.0.113.5", 80, pid=-1)),
    18: ("remote port 0", _event(18, "connect", "203.0.113.5", 0)),
    19: ("unspecified 0.0.0.0", _event(19, "connect", "0.0.0.0", 80)),
    20: ("unspecified ::", _event(20, "connect", "::", 80, family=10)),
    21: ("empty peer", _event(21, "connect", "", 80)),
}


@pytest.fixture
def socket_events(db: sqlite3.Connection, queries: dict[str, Query]) -> dict[int, dict[str, Any]]:
    insert(
        db, "socket_events", [row for _, row in (*EVENTS_KEPT.values(), *EVENTS_DROPPED.values())]
    )
    columns, rows = run(db, queries["rarenet_socket_events"])
    assert columns == SOCKET_EVENTS_COLUMNS
    return {row["time"]: row for row in rows}


def test_socket_events_keeps_exactly_connect_and_accept_to_remote_peers(
    socket_events: dict[int, dict[str, Any]],
) -> None:
    assert sorted(socket_events) == sorted(EVENTS_KEPT)
    for time, (direction, row) in EVENTS_KEPT.items():
        assert socket_events[time]["direction"] == direction
        assert socket_events[time]["path"] == row["path"]
