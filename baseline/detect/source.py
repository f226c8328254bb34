"""Where the rule reads presence from: one store, or the stores of several host shards.

A `PresenceSource` answers the rule's questions in batches, each over its own hosts
only. Every fleet number the rule needs is a sum over disjoint host sets (hosts per key
per bucket, hosts per bucket, distinct hosts per key up to a cap), a min / max (first
and last bucket a key or a shell destination was seen) or a per-host number that lives
on the host's shard (its use of a binary, its active buckets). `features.gather` merges
the answers, so one node is simply a fleet of one shard (`LocalSource`) and the merge
code is the same for both. `RemoteSource` (baseline/detect/shards.py) asks a shard's
`rarenet serve` over HTTP.

Every method takes and returns plain JSON-shaped values (lists of lists, ints, strings),
so a remote shard answers exactly what a local one would.
"""

from __future__ import annotations

from dataclasses import astuple
from typing import Any, Protocol

import orjson

from rarenet.baseline.detect import late
from rarenet.baseline.detect.binary_users import users_before
from rarenet.baseline.detect.destinations import hosts_before
from rarenet.baseline.detect.detail import detail_row
from rarenet.baseline.detect.memory import remembered
from rarenet.baseline.detect.peers import peer_uses_in
from rarenet.baseline.detect.presence import (
    USED_SOURCE,
    fold_mark,
    host_activity_sql,
    hosts_in_window,
    refresh_presence,
    used_where,
)
from rarenet.baseline.detect.suspects import EMPTY_USAGE, occasion_gap, usage_in
from rarenet.baseline.errors import RarenetError
from rarenet.baseline.store import Store

EMPTY_USAGE_ROW = astuple(EMPTY_USAGE)
HOST_PATH_CAP = 12  # familiarity 1 - exp(-12/4) = 0.95: more buckets change little

# (bucket, host, name, path, first_id): a host using a binary in a bucket
CandidateRow = tuple[int, str, str, str, int]
# (kind, key, low, high[, cap]): a key's buckets in [low, high)
KeyRange = tuple[str, str, int, int]
CappedRange = tuple[str, str, int, int, int]


class ShardUnavailable(RarenetError):
    """A shard did not answer (down, unreachable, or refused)."""


class PresenceSource(Protocol):
    """One shard's presence (or a whole single node's), asked in batches."""

    name: str

    def refresh(self, span: int) -> int:
        """Fold new observations into presence; how many were folded."""
        ...

    def candidates(self, span: int, low: int, high: int) -> list[CandidateRow]:
        """Presence rows with bucket in [low, high], ordered by (bucket, host, name, path)."""
        ...

    def fleet_buckets(self, span: int, low: int, high: int) -> list[tuple[int, int]]:
        """(bucket, active hosts) for buckets in [low, high)."""
        ...

    def key_buckets(self, span: int, ranges: list[KeyRange]) -> list[tuple[int, Any, Any]]:
        """Per range: (host-buckets, first bucket or None, last bucket or None)."""
        ...

    def hosts_in_window(self, span: int, ranges: list[CappedRange]) -> list[int]:
        """Per range: distinct hosts using the key, counted up to the cap."""
        ...

    def hosts_in_bucket(self, span: int, keys: list[tuple[str, str, int]]) -> list[int]:
        """Per (kind, key, bucket): hosts using the key in that bucket (0 if none)."""
        ...

    def pair_stats(
        self,
        span: int,
        history: int,
        rows: list[CandidateRow],
        rare: list[bool],
        until: list[int] | None = None,
    ) -> tuple[list[float], list[float]]:
        """Per own candidate: the host's buckets with the binary (before `until[i]`, its
        suspect's first signal, when given), and its active buckets."""
        ...

    def peer_uses(self, span: int, history: int, asks: list[list[Any]]) -> list[list[Any]]:
        """Per (host, path, [bucket, …]): other hosts' routine use of the path and the
        paths of those hosts and of `host` (baseline/detect/peers.py `peer_uses_in`)."""
        ...

    def suspect_usage(
        self, span: int, history: int, asks: list[list[Any]]
    ) -> list[list[list[Any]]]:
        """Per (host, name, path, since, [bucket, …]): per bucket, the suspect's use of
        its binary in that bucket's baseline window (baseline/detect/suspects.py
        `Usage`); zeros for hosts not on this shard."""
        ...

    def clean_bounds(self, span: int, asks: list[list[Any]]) -> list[tuple[Any, Any]]:
        """Per (kind, key, low, high, [[host, path, since], …]): the first and (for a
        path) last bucket in [low, high) with the key, leaving out each listed host's use
        of that path from `since` on (open suspects); None where nothing is left."""
        ...

    def name_elsewhere(self, span: int, history: int, rows: list[CandidateRow]) -> list[bool]:
        """Per candidate: whether its host used its name from another path in the
        baseline window (its own program at a new path: an upgrade)."""
        ...

    def first_remotes(self, first_ids: list[int]) -> list[tuple[bool, str | None]]:
        """Per observation: (still stored, its remote address, which may be NULL)."""
        ...

    def first_endpoints(self, first_ids: list[int]) -> list[list[Any] | None]:
        """Per observation: [remote address, remote port, direction, user name, uid],
        None once pruned."""
        ...

    def destination_hosts(self, span: int, asks: list[list[Any]]) -> list[list[Any]]:
        """Per [host, remote, port, low, high, path]: [other hosts of this store that
        connected to remote:port within [low, high) and never ran `path` (up to 2),
        whether `host` did, other hosts that ran `path` and connected there (up to 2)]."""
        ...

    def binary_users(self, span: int, asks: list[list[Any]]) -> list[list[Any]]:
        """Per [host, name, path, user, low, high]: [whether `user` ran the binary on
        `host` in [low, high), the users that did] (baseline/detect/binary_users.py)."""
        ...

    def remembered(self, span: int, pairs: list[list[str]]) -> list[str | None]:
        """Per (host, name, path): the days the host used the binary, as stored in the
        long memory (baseline/detect/memory.py), None where nothing is kept."""
        ...

    def shell_destinations(self, span: int, pairs: list[tuple[str, str]]) -> list[tuple[Any, Any]]:
        """Per (shell name, remote): (first bucket, last bucket), or (None, None)."""
        ...

    def detail(self, first_id: int) -> list[Any] | None:
        """The raw detail row of an observation (baseline/detect/detail.py)."""
        ...

    def observations_in(self, start: int, end: int) -> int:
        """Observations with time in [start, end)."""
        ...

    def last_seen(self, span: int, host: str, exe: str, before: int) -> int | None:
        """The newest bucket before `before` in which the host used the binary."""
        ...

    def data_end(self, span: int) -> int | None:
        """The end of the newest bucket in presence (None: no data yet)."""
        ...

    def fold_mark(self, span: int) -> int:
        """The fold's watermark now: queued host-buckets up to it are in presence
        (baseline/detect/late.py)."""
        ...

    def backlog(self, span: int, low: int, high: int, mark: int) -> list[Any]:
        """Queued host-buckets per bucket in [low, high): [[bucket, count], ...]."""
        ...

    def pending_candidates(self, span: int, bucket: int, mark: int) -> list[CandidateRow]:
        """Presence rows of one bucket's queued hosts, in candidate order."""
        ...

    def settle(self, span: int, low: int, high: int, mark: int) -> int:
        """Take the host-buckets in [low, high) queued by `mark` off the queue."""
        ...

    def drop_too_old(self, span: int, before: int, run_at: int) -> int:
        """Count queued host-buckets older than `before` per host, and drop them."""
        ...


class LocalSource:
    """A store on this machine: the whole fleet of a single node, or one shard's hosts."""

    def __init__(self, store: Store, name: str = "local") -> None:
        self.store, self.name = store, name

    def refresh(self, span: int) -> int:
        return refresh_presence(self.store, span)

    def candidates(self, span: int, low: int, high: int) -> list[CandidateRow]:
        return [
            tuple(row)
            for row in self.store.conn.execute(
                "SELECT bucket, host, name, path, first_id FROM presence WHERE span = ? "
                "AND bucket >= ? AND bucket <= ? ORDER BY bucket, host, name, path",
                (span, low, high),
            )
        ]

    def fleet_buckets(self, span: int, low: int, high: int) -> list[tuple[int, int]]:
        return [
            (int(bucket), int(hosts))
            for bucket, hosts in self.store.conn.execute(
                "SELECT bucket, hosts FROM fleet_bucket WHERE span = ? AND bucket >= ? "
                "AND bucket < ? ORDER BY bucket",
                (span, low, high),
            )
        ]

    def key_buckets(self, span: int, ranges: list[KeyRange]) -> list[tuple[int, Any, Any]]:
        conn = self.store.conn
        out = []
        for kind, key, low, high in ranges:
            total, first, last = conn.execute(
                "SELECT coalesce(sum(hosts), 0), min(bucket), max(bucket) FROM key_bucket "
                "WHERE span = ? AND kind = ? AND key = ? AND bucket >= ? AND bucket < ?",
                (span, kind, key, low, high),
            ).fetchone()
            out.append((int(total), first, last))
        return out

    def hosts_in_window(self, span: int, ranges: list[CappedRange]) -> list[int]:
        conn = self.store.conn
        return [
            hosts_in_window(conn, span, kind, key, low, high, cap)
            for kind, key, low, high, cap in ranges
        ]

    def hosts_in_bucket(self, span: int, keys: list[tuple[str, str, int]]) -> list[int]:
        conn = self.store.conn
        out = []
        for kind, key, bucket in keys:
            row = conn.execute(
                "SELECT hosts FROM key_bucket WHERE span = ? AND kind = ? AND key = ? "
                "AND bucket = ?",
                (span, kind, key, bucket),
            ).fetchone()
            out.append(int(row[0]) if row else 0)
        return out

    def pair_stats(
        self,
        span: int,
        history: int,
        rows: list[CandidateRow],
        rare: list[bool],
        until: list[int] | None = None,
    ) -> tuple[list[float], list[float]]:
        """This host's buckets with this binary in its window (by path, or by name when
        the path is unknown; counted up to 12 for rare keys, up to 1 for routine ones),
        ending at `until[i]` (an open suspect's first signal) when that comes first, and
        the host's active buckets (two seeks on `host_bucket.seq` per host and bucket).
        A routine binary the host already used in an earlier bucket of this window needs
        no seek. `rows` come in bucket order."""
        conn = self.store.conn
        host_path = [1.0] * len(rows)
        earliest: dict[tuple[str, str, str], int] = {}
        probes = []
        for i, (bucket, host, name, path, _) in enumerate(rows):
            first = earliest.setdefault((host, name, path), bucket)
            end = bucket if until is None else min(bucket, int(until[i]))
            if rare[i] or end < bucket or not (bucket - history <= first < bucket):
                probes.append((i, bucket, host, name, path, int(rare[i]), end))
        window = "p.bucket >= c.bucket - :history AND p.bucket < c.until"
        used = {}
        for column in ("path", "name"):
            source = USED_SOURCE[column]
            where = f"{used_where(column, 'c.host', f'c.{column}')} AND {window}"
            used[column] = (
                f"CASE WHEN c.rare THEN {_capped_count(source, where, HOST_PATH_CAP)} "
                f"ELSE EXISTS (SELECT 1 FROM {source} WHERE {where}) END"
            )
        # The probes travel as one JSON parameter (json_each): several times cheaper
        # than filling a temporary table row by row.
        params: dict[str, object] = {"span": span, "history": history, "probes": _json(probes)}
        for i, count in conn.execute(
            "WITH c AS (SELECT value ->> 0 AS id, value ->> 1 AS bucket, value ->> 2 AS host, "
            "value ->> 3 AS name, value ->> 4 AS path, value ->> 5 AS rare, "
            "value ->> 6 AS until FROM json_each(:probes)) "
            f"SELECT c.id, CASE WHEN c.path != '' THEN {used['path']} ELSE {used['name']} END "
            "FROM c",
            params,
        ):
            host_path[i] = float(count)
        params["pairs"] = _json(sorted({(r[1], r[0]) for r in rows}))
        active_sql = host_activity_sql("a.host", "a.bucket", "a.bucket - :history")
        activity = {
            (host, bucket): active
            for host, bucket, active in conn.execute(
                "WITH a AS (SELECT value ->> 0 AS host, value ->> 1 AS bucket "
                "FROM json_each(:pairs)) "
                f"SELECT a.host, a.bucket, {active_sql} FROM a",
                params,
            )
        }
        return host_path, [float(activity[r[1], r[0]]) for r in rows]

    def peer_uses(self, span: int, history: int, asks: list[list[Any]]) -> list[list[Any]]:
        gap = occasion_gap(span, history)
        return [peer_uses_in(self.store.conn, span, history, gap, ask) for ask in asks]

    def suspect_usage(
        self, span: int, history: int, asks: list[list[Any]]
    ) -> list[list[list[Any]]]:
        conn = self.store.conn
        here = {
            host
            for (host,) in conn.execute(
                "SELECT DISTINCT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM "
                "host_bucket WHERE span = ? AND host = value)",
                (_json(sorted({ask[0] for ask in asks})), span),
            )
        }
        return [
            usage_in(conn, span, history, ask)
            if ask[0] in here
            else [list(EMPTY_USAGE_ROW)] * len(ask[4])
            for ask in asks
        ]

    def clean_bounds(self, span: int, asks: list[list[Any]]) -> list[tuple[Any, Any]]:
        """Host by host from `key_host`, one ordered index seek each (a left-out host's
        use of its path from `since` on skipped); the last bucket for a path only (a
        name's is never shown). Asked only for keys whose bound was a suspect's alone,
        which are rare ones."""
        conn = self.store.conn
        out: list[tuple[Any, Any]] = []
        for kind, key, low, high, left_out in asks:
            since_of = {host: (path, since) for host, path, since in left_out}
            firsts: list[int] = []
            lasts: list[int] = []
            for (host,) in conn.execute(
                "SELECT host FROM key_host WHERE span = ? AND kind = ? AND key = ? "
                "AND last_bucket >= ? AND first_bucket < ?",
                (span, kind, key, low, high),
            ):
                path, since = since_of.get(host, ("", high))
                params = {
                    "span": span,
                    "host": host,
                    "key": key,
                    "low": low,
                    "high": high,
                    "path": path,
                    "since": since,  # `high` for a host not left out: nothing skipped
                }
                # the last bucket is shown for a path only (explain's "last seen")
                for order in ("", " DESC") if kind == "path" else ("",):
                    row = conn.execute(
                        f"SELECT p.bucket FROM {USED_SOURCE[kind]} "
                        f"WHERE {used_where(kind, ':host', ':key')} AND p.bucket >= :low "
                        "AND p.bucket < :high AND NOT (p.path = :path AND p.bucket >= :since) "
                        f"ORDER BY p.bucket{order} LIMIT 1",
                        params,
                    ).fetchone()
                    if row is not None:
                        (lasts if order else firsts).append(int(row[0]))
            out.append((min(firsts, default=None), max(lasts, default=None)))
        return out

    def name_elsewhere(self, span: int, history: int, rows: list[CandidateRow]) -> list[bool]:
        conn = self.store.conn
        return [
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM name_path AS np JOIN presence AS p "
                "INDEXED BY presence_host_path ON p.span = np.span AND p.host = ? "
                "AND p.path = np.path AND p.name = np.name WHERE np.span = ? AND np.name = ? "
                "AND np.path != ? AND p.bucket >= ? AND p.bucket < ?)",
                (host, span, name, path, bucket - history, bucket),
            ).fetchone()[0]
            == 1
            for bucket, host, name, path, _ in rows
        ]

    def first_remotes(self, first_ids: list[int]) -> list[tuple[bool, str | None]]:
        found = dict(
            self.store.conn.execute(
                "SELECT o.id, o.remote_address FROM json_each(?) AS j "
                "JOIN observations AS o ON o.id = j.value",
                (_json(first_ids),),
            ).fetchall()
        )
        return [(i in found, found.get(i)) for i in first_ids]

    def remembered(self, span: int, pairs: list[list[str]]) -> list[str | None]:
        return remembered(self.store.conn, span, pairs)

    def first_endpoints(self, first_ids: list[int]) -> list[list[Any] | None]:
        found = {
            row[0]: [row[1], row[2], row[3], row[4], row[5]]
            for row in self.store.conn.execute(
                "SELECT o.id, o.remote_address, o.remote_port, o.direction, o.username, o.uid "
                "FROM json_each(?) AS j "
                "JOIN observations AS o ON o.id = j.value",
                (_json(first_ids),),
            )
        }
        return [found.get(i) for i in first_ids]

    def destination_hosts(self, span: int, asks: list[list[Any]]) -> list[list[Any]]:
        return hosts_before(self.store.conn, span, asks)

    def binary_users(self, span: int, asks: list[list[Any]]) -> list[list[Any]]:
        return users_before(self.store.conn, span, asks)

    def shell_destinations(self, span: int, pairs: list[tuple[str, str]]) -> list[tuple[Any, Any]]:
        conn = self.store.conn
        out: list[tuple[Any, Any]] = []
        for name, remote in pairs:
            row = conn.execute(
                "SELECT first_bucket, last_bucket FROM shell_destination WHERE span = ? "
                "AND name = ? AND remote = ?",
                (span, name, remote),
            ).fetchone()
            out.append((row[0], row[1]) if row else (None, None))
        return out

    def detail(self, first_id: int) -> list[Any] | None:
        return detail_row(self.store.conn, first_id)

    def observations_in(self, start: int, end: int) -> int:
        return int(
            self.store.conn.execute(
                "SELECT count(*) FROM observations WHERE time >= ? AND time < ?", (start, end)
            ).fetchone()[0]
        )

    def last_seen(self, span: int, host: str, exe: str, before: int) -> int | None:
        row = self.store.conn.execute(
            "SELECT max(bucket) FROM presence WHERE span = ? AND host = ? "
            "AND (path = ? OR name = ?) AND bucket < ?",
            (span, host, exe, exe, before),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def data_end(self, span: int) -> int | None:
        row = self.store.conn.execute(
            "SELECT max(bucket) FROM fleet_bucket WHERE span = ?", (span,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0]) + span

    def fold_mark(self, span: int) -> int:
        return fold_mark(self.store.conn, span)

    def backlog(self, span: int, low: int, high: int, mark: int) -> list[Any]:
        return late.backlog(self.store.conn, span, low, high, mark)

    def pending_candidates(self, span: int, bucket: int, mark: int) -> list[CandidateRow]:
        return late.pending_candidates(self.store.conn, span, bucket, mark)

    def settle(self, span: int, low: int, high: int, mark: int) -> int:
        with self.store.transaction() as conn:
            return late.settle(conn, span, low, high, mark)

    def drop_too_old(self, span: int, before: int, run_at: int) -> int:
        if not late.has_pending_before(self.store.conn, span, before):
            return 0  # the common case: no write transaction on every run
        with self.store.transaction() as conn:
            return late.drop_too_old(conn, span, before, run_at)


def _json(rows: list[Any]) -> str:
    """Rows as a JSON array (for `json_each`). Stored text is valid UTF-8 (SQLite would
    have refused lone surrogates), so orjson encodes every value."""
    return orjson.dumps(rows).decode()


def _capped_count(source: str, where: str, cap: int) -> str:
    """SQL for min(count of matching rows, cap): one probe at offset cap-1 decides
    saturation; only below the cap are rows counted (fewer than cap of them)."""
    probe = f"SELECT 1 FROM {source} WHERE {where} LIMIT 1 OFFSET {cap - 1}"
    return (
        f"CASE WHEN ({probe}) IS NOT NULL THEN {cap} "
        f"ELSE (SELECT count(*) FROM {source} WHERE {where}) END"
    )
