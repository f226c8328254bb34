"""The two tables: `unusual_network_activity` (live sockets, scored) and
`network_baseline` (the snapshot's entries).

Sockets come from a `SocketSource`: `CoreSockets` asks osquery core for the pack query's
rows (equality constraints pushed down as validated, quoted literals), `ProcSockets` runs
the /proc collector when there is no osquery, and `FallbackSockets` (what the extension
uses) turns to /proc when core cannot give the rows. Rows are filtered again here on every
equality constraint so no wrong row is returned, whatever the source did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

from rarenet.extension import core
from rarenet.extension.assess import assess
from rarenet.extension.collector import COLUMNS, scan
from rarenet.extension.sdk import BIGINT, DOUBLE, INTEGER, TEXT, QueryContext, cell
from rarenet.extension.sync import SnapshotSync

SOCKET_TYPES: dict[str, str] = {
    "pid": INTEGER, "fd": BIGINT, "socket": BIGINT, "family": INTEGER, "protocol": INTEGER,
    "local_address": TEXT, "local_port": INTEGER, "remote_address": TEXT,
    "remote_port": INTEGER, "state": TEXT, "net_namespace": TEXT, "name": TEXT,
    "path": TEXT, "cmdline": TEXT, "cwd": TEXT, "uid": BIGINT, "username": TEXT,
    "parent": BIGINT, "parent_name": TEXT, "parent_path": TEXT, "parent_cmdline": TEXT,
    "grandparent": BIGINT, "grandparent_name": TEXT, "grandparent_path": TEXT,
    "grandparent_cmdline": TEXT, "great_grandparent": BIGINT, "great_grandparent_name": TEXT,
    "great_grandparent_path": TEXT, "great_grandparent_cmdline": TEXT, "direction": TEXT,
}  # fmt: skip
# The types of osquery's own columns (process_open_sockets, processes, users): osquery
# reads an INTEGER column as a 32-bit int (sqlite3_result_int), so a namespace inode like
# 4026531840 declared INTEGER would come out as -268435456.

ACTIVITY_COLUMNS: tuple[tuple[str, str], ...] = (
    *((name, SOCKET_TYPES[name]) for name in COLUMNS),
    ("anomaly_score", INTEGER),  # floor of the rule's 0–100 score; "" without a snapshot
    ("score", DOUBLE),  # the exact score (one decimal), as the rule computes it
    ("reason", TEXT),
    ("fleet_hosts", INTEGER),
    ("fleet_host_buckets", BIGINT),
    ("host_buckets_on_host", INTEGER),
    ("first_seen", BIGINT),
    ("last_seen", BIGINT),
    ("snapshot_age", BIGINT),
    ("snapshot_version", INTEGER),
)

BASELINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", TEXT),
    ("path", TEXT),
    ("hosts", INTEGER),
    ("host_buckets", BIGINT),
    ("first_seen", BIGINT),
    ("last_seen", BIGINT),
    ("rarity", DOUBLE),
    ("host_buckets_on_host", INTEGER),
    ("data_time", BIGINT),
    ("generated_at", BIGINT),
    ("snapshot_version", INTEGER),
)

# The pack query (queries/rarenet_open_sockets.sql) without its comments; a test checks
# they stay the same statement.
OPEN_SOCKETS_SQL = """SELECT
  s.pid, s.fd, s.socket, s.family, s.protocol, s.local_address, s.local_port,
  s.remote_address, s.remote_port, s.state, s.net_namespace, p.name, p.path, p.cmdline,
  p.cwd, p.uid, COALESCE(u.username, '') AS username, p.parent,
  COALESCE(pp.name, '') AS parent_name, COALESCE(pp.path, '') AS parent_path,
  COALESCE(pp.cmdline, '') AS parent_cmdline, COALESCE(pp.parent, -1) AS grandparent,
  COALESCE(gp.name, '') AS grandparent_name, COALESCE(gp.path, '') AS grandparent_path,
  COALESCE(gp.cmdline, '') AS grandparent_cmdline,
  COALESCE(gp.parent, -1) AS great_grandparent,
  COALESCE(ggp.name, '') AS great_grandparent_name,
  COALESCE(ggp.path, '') AS great_grandparent_path,
  COALESCE(ggp.cmdline, '') AS great_grandparent_cmdline,
  CASE
    WHEN EXISTS (
      SELECT 1 FROM listening_ports AS l
      WHERE l.pid = s.pid AND l.port = s.local_port AND l.protocol = s.protocol
    ) THEN 'inbound'
    ELSE 'outbound'
  END AS direction
FROM process_open_sockets AS s
JOIN processes AS p ON p.pid = s.pid
LEFT JOIN processes AS pp ON pp.pid = p.parent
LEFT JOIN processes AS gp ON gp.pid = pp.parent
LEFT JOIN processes AS ggp ON ggp.pid = gp.parent
LEFT JOIN users AS u ON u.uid = p.uid
WHERE s.family IN (2, 10)
  AND s.pid > 0
  AND s.remote_port != 0
  AND s.remote_address NOT IN ('', '0.0.0.0', '::', '::1')
  AND s.remote_address NOT LIKE '127.%'
  AND s.remote_address NOT LIKE '::ffff:127.%'
  AND COALESCE(s.state, '') != 'LISTEN'"""


class SocketSource(Protocol):
    def rows(self, equals: Mapping[str, tuple[str, ...]]) -> Iterable[Mapping[str, Any]]: ...


def literal(kind: str, value: str) -> str | None:
    """`value` as a safe SQL literal of `kind`, or None when it cannot be one (then the
    constraint is not pushed down and only filtered here)."""
    if kind in (INTEGER, BIGINT):
        try:
            return str(int(value, 10))
        except ValueError:
            return None
    if "\x00" in value or value == "":
        return None  # '' also matches a NULL (UDP sockets have no state), shown as ""
    return "'" + value.replace("'", "''") + "'"


def socket_sql(equals: Mapping[str, tuple[str, ...]]) -> str:
    """The pack query, with equality constraints on its columns pushed down."""
    terms = []
    for column in COLUMNS:
        for value in equals.get(column, ()):
            sql = literal(SOCKET_TYPES[column], value)
            if sql is not None:
                terms.append(f"{column} = {sql}")
    if not terms:
        return OPEN_SOCKETS_SQL
    return f"SELECT * FROM ({OPEN_SOCKETS_SQL}) WHERE " + " AND ".join(terms)


def json_sql(sql: str) -> str:
    """`sql`'s rows as one JSON text (one Thrift string instead of 40,000)."""
    return f"SELECT json_group_array(json_array({', '.join(COLUMNS)})) AS rows FROM ({sql})"


class CoreSockets:
    """The pack query's rows from osquery core, over a fresh bounded connection.

    Asked as one JSON value (SQLite's json_group_array, built into osquery's SQLite):
    decoding 2,000 rows × 20 strings with pure-Python Thrift costs ~150 ms, one string
    and json.loads ~5 ms. If core refuses that SQL, the plain query is used from then on.
    """

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.as_json = True

    def rows(self, equals: Mapping[str, tuple[str, ...]]) -> Iterable[Mapping[str, Any]]:
        sql = socket_sql(equals)
        if self.as_json:
            try:
                answer = core.query(self.socket_path, json_sql(sql), self.timeout)
                raw = json.loads(answer[0]["rows"])
                if not all(isinstance(row, list) and len(row) == len(COLUMNS) for row in raw):
                    raise ValueError(f"expected rows of {len(COLUMNS)} values")
                # dicts made one at a time while the rows stream out (never 2,000 at once)
                return (dict(zip(COLUMNS, row, strict=True)) for row in raw)
            except core.CoreRefused:
                self.as_json = False  # an osquery without JSON functions
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise core.CoreError(f"osquery answered unreadable rows: {exc}") from None
        return list(core.query(self.socket_path, sql, self.timeout))


class ProcSockets:
    """The same rows from /proc (extension/collector.py), without osquery."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root

    def rows(self, equals: Mapping[str, tuple[str, ...]]) -> Iterable[Mapping[str, Any]]:
        return [row.as_osquery_row() for row in scan(self.proc_root)]


class FallbackSockets:
    """Core's rows; when core cannot give them (its SQL refused — a build or a denylist
    without process_open_sockets — or no answer in time), this host's /proc instead, so
    the table still answers. `last_source` says which one answered."""

    def __init__(self, primary: SocketSource, fallback: SocketSource) -> None:
        self.primary = primary
        self.fallback = fallback
        self.last_source = "osquery"

    def rows(self, equals: Mapping[str, tuple[str, ...]]) -> Iterable[Mapping[str, Any]]:
        try:
            rows = self.primary.rows(equals)
            self.last_source = "osquery"
            return rows
        except core.CoreError:
            self.last_source = "/proc"
            return self.fallback.rows(equals)


def matches(
    row: Mapping[str, Any], equals: Mapping[str, tuple[str, ...]], types: Mapping[str, str]
) -> bool:
    """False only when the row certainly fails an equality constraint (osquery filters
    again; an uncertain comparison keeps the row)."""
    for column, values in equals.items():
        kind = types.get(column)
        if kind is None or column not in row:
            continue
        have = cell(row[column])  # as osquery will see it: None is ""
        for want in values:
            if kind in (INTEGER, BIGINT):
                try:
                    if int(have, 10) != int(want, 10):
                        return False
                except ValueError:
                    continue
            elif kind == TEXT and have != want:
                return False
    return True


class UnusualNetworkActivity:
    name = "unusual_network_activity"
    columns = ACTIVITY_COLUMNS
    types: ClassVar[dict[str, str]] = dict(ACTIVITY_COLUMNS)

    def __init__(
        self, sockets: SocketSource, sync: SnapshotSync, clock: Callable[[], float] = time.time
    ) -> None:
        self.sockets = sockets
        self.sync = sync
        self.clock = clock

    def generate(self, context: QueryContext) -> Iterable[Mapping[str, Any]]:
        state = self.sync.state
        snapshot = state.snapshot
        rows = self.sockets.rows(context.equals)
        age = version = None
        if snapshot is not None:
            age = max(0, int(self.clock() - snapshot.generated_at))
            version = snapshot.version
        return self._rows(rows, state, context, {"snapshot_age": age, "snapshot_version": version})

    def _rows(
        self,
        rows: Iterable[Mapping[str, Any]],
        state: Any,
        context: QueryContext,
        common: dict[str, Any],
    ) -> Iterator[Mapping[str, Any]]:
        memo: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            key = (str(row.get("name", "")), str(row.get("path", "")))
            extra = memo.get(key)
            if extra is None:
                extra = memo[key] = {**self._scored(key[0], key[1], state), **common}
            full = {**row, **extra}
            if matches(full, context.equals, self.types):
                yield full

    @staticmethod
    def _scored(name: str, path: str, state: Any) -> dict[str, Any]:
        if state.snapshot is None:
            return {"reason": state.status}
        result = assess(state.snapshot, name, path)
        reason = result.reason
        if state.status != "snapshot current" and not state.status.startswith("snapshot current"):
            reason = f"{reason} ({state.status})"
        return {
            "anomaly_score": int(result.score.score),
            "score": result.score.score,
            "reason": reason,
            "fleet_hosts": result.hosts,
            "fleet_host_buckets": result.host_buckets,
            "host_buckets_on_host": result.on_host,
            "first_seen": result.first_seen,
            "last_seen": result.last_seen,
        }


class NetworkBaseline:
    name = "network_baseline"
    columns = BASELINE_COLUMNS
    types: ClassVar[dict[str, str]] = dict(BASELINE_COLUMNS)

    def __init__(self, sync: SnapshotSync) -> None:
        self.sync = sync

    def generate(self, context: QueryContext) -> Iterator[Mapping[str, Any]]:
        snapshot = self.sync.state.snapshot
        if snapshot is None:
            return iter(())
        if context.equal("path"):
            entries: Iterable[Any] = snapshot.path_entries(context.equal("path")[0])
        elif context.equal("name"):
            entries = snapshot.name_entries(context.equal("name")[0])
        else:
            entries = snapshot.entries
        common = {
            "data_time": snapshot.data_time,
            "generated_at": snapshot.generated_at,
            "snapshot_version": snapshot.version,
        }
        rows = (
            {
                "name": e.name,
                "path": e.path,
                "hosts": e.hosts,
                "host_buckets": e.host_buckets,
                "first_seen": e.first_seen,
                "last_seen": e.last_seen,
                "rarity": e.rarity,
                "host_buckets_on_host": e.on_host,
                **common,
            }
            for e in entries
        )
        return (row for row in rows if matches(row, context.equals, self.types))
