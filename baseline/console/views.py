"""What the console's pages show, read from the store into typed values.

Every function here only reads (except `acknowledge`); the templates only format. Times
are data time: "now" on a binary's page is the newest bucket the fleet reported, so a
backtest or demo store reads the same as a live one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rarenet.baseline import triage
from rarenet.baseline.access.audit import cli_principal
from rarenet.baseline.access.roles import Principal
from rarenet.baseline.deliver.outbox import STATES
from rarenet.baseline.detect.exceptions import ExceptedShare, broad_exceptions, excepted_last_day
from rarenet.baseline.detect.silence import Arrivals, arrivals
from rarenet.baseline.detect.suspects import BENIGN, VERDICTS
from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store
from rarenet.baseline.units import format_time, parse_time

PAGE_GROUPS = 50  # groups (rows) per page of the signals list
MEMBERS_SHOWN = 50  # hosts listed inside one group row
HOSTS_SHOWN = 200  # hosts listed on a binary's page
BINARIES_SHOWN = 300  # binaries listed on a host's page
TIMELINE_BEFORE = 12 * 3600  # a host's timeline around a signal: this long before …
TIMELINE_AFTER = 3 * 3600  # … and this long after
TIMELINE_ROWS = 24  # binaries drawn on a host's timeline (the signalled one always)
ACK_FILTERS = ("open", "acknowledged", "all")
MAX_FILTER = 200  # characters in a text filter


NO_FILTER = "1"  # the condition of the unfiltered list


@dataclass(frozen=True, order=True)
class Cursor:
    """A place in the signals list, newest first: a group's latest signal time and its
    id (the list's order is (latest, group) descending). Pages are read from a cursor
    by index (keyset paging), so page 2,000 costs what page 1 does."""

    latest: float
    group: str

    @property
    def text(self) -> str:
        """As a query parameter: the exact float, "~", the group id."""
        return f"{self.latest!r}~{self.group}"

    @classmethod
    def parse(cls, raw: str | None, key: str) -> Cursor | None:
        """A cursor from its query parameter; InputError names the parameter."""
        if raw is None or not raw.strip():
            return None
        latest, sep, group = raw.strip().partition("~")
        try:
            value = float(latest)
        except ValueError:
            value = float("nan")
        if not sep or not group or len(group) > MAX_FILTER or value != value:
            raise InputError("not a place in the list (follow the page's links)", where=key)
        return cls(value, group)


@dataclass(frozen=True)
class SignalFilter:
    """The signals list's filters, from the page's query string."""

    state: str | None = None  # a delivery state, or "none"
    host: str = ""  # substring of the host name
    executable: str = ""  # substring of the name or path
    min_score: float | None = None
    since: int | None = None  # bucket at or after (data time)
    until: int | None = None  # bucket before
    ack: str = "all"
    after: Cursor | None = None  # older than this group (the "older" link)
    before: Cursor | None = None  # newer than this group (the "newer" link)

    @classmethod
    def parse(cls, query: dict[str, str]) -> SignalFilter:
        """Filters from query parameters; InputError names the parameter that is wrong."""
        state = query.get("state") or None
        if state is not None and state not in (*STATES, "none"):
            raise InputError(f"unknown state {state[:40]!r}", where="state")
        ack = query.get("ack") or "all"
        if ack not in ACK_FILTERS:
            raise InputError(f"ack must be one of {', '.join(ACK_FILTERS)}", where="ack")
        text = {}
        for key in ("host", "executable"):
            value = query.get(key, "").strip()
            if len(value) > MAX_FILTER:
                raise InputError(f"at most {MAX_FILTER} characters", where=key)
            text[key] = value
        return cls(
            state=state,
            host=text["host"],
            executable=text["executable"],
            min_score=_number(query.get("min_score"), "min_score", 0, 100),
            since=_time(query.get("since"), "since"),
            until=_time(query.get("until"), "until"),
            ack=ack,
            after=Cursor.parse(query.get("after"), "after"),
            before=Cursor.parse(query.get("before"), "before"),
        )

    def query(self, **changes: Any) -> dict[str, str]:
        """These filters as query parameters (empty ones left out), with `changes`
        (a change to "" leaves that parameter out)."""
        values = {
            "state": self.state or "",
            "host": self.host,
            "executable": self.executable,
            "min_score": "" if self.min_score is None else f"{self.min_score:g}",
            "since": "" if self.since is None else str(self.since),
            "until": "" if self.until is None else str(self.until),
            "ack": "" if self.ack == "all" else self.ack,
            "after": "" if self.after is None else self.after.text,
            "before": "" if self.before is None else self.before.text,
        }
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v}

    @property
    def score_only(self) -> bool:
        """Only a score filter is set: its groups are those whose highest score reaches it."""
        return self.min_score is not None and replace(self, min_score=None) == SignalFilter(
            after=self.after, before=self.before
        )

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on `signals AS s` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.state == "none":
            clauses.append("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.signal_id = s.id)")
        elif self.state is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.signal_id = s.id AND d.state = ?)"
            )
            params.append(self.state)
        # substring filters match the distinct hosts and binaries first (a few thousand
        # rows), then read their signals by index: never a scan of every signal
        if self.host:
            clauses.append(
                "s.host IN (SELECT host FROM signal_host WHERE instr(lower(host), lower(?)) > 0)"
            )
            params.append(self.host)
        if self.executable:
            clauses.append(
                "(s.path, s.name) IN (SELECT path, name FROM signal_binary "
                "WHERE instr(lower(path), lower(?)) > 0 OR instr(lower(name), lower(?)) > 0)"
            )
            params += [self.executable, self.executable]
        if self.min_score is not None:
            clauses.append("s.score >= ?")
            params.append(self.min_score)
        if self.since is not None:
            clauses.append("s.bucket >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("s.bucket < ?")
            params.append(self.until)
        if self.ack != "all":
            exists = "EXISTS (SELECT 1 FROM signal_acks a WHERE a.signal_id = s.id)"
            clauses.append(exists if self.ack == "acknowledged" else f"NOT {exists}")
        return (" AND ".join(clauses) or NO_FILTER), params


def _number(raw: str | None, key: str, low: float, high: float) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{raw[:40]!r} is not a number", where=key) from None
    if not low <= value <= high:
        raise InputError(f"must be from {low:g} to {high:g}", where=key)
    return value


def _time(raw: str | None, key: str) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return parse_time(raw.strip())
    except (ValueError, OverflowError):
        raise InputError(
            f"{raw[:40]!r} is not a time (unix seconds or ISO 8601)", where=key
        ) from None


@dataclass(frozen=True)
class Delivery:
    webhook: str
    state: str
    last_error: str | None = None


@dataclass(frozen=True)
class SignalRow:
    """One signal in a list."""

    id: str
    host: str
    name: str
    path: str
    bucket: int
    score: float
    created_at: float
    group: str
    kind: str
    reason: str
    acknowledged: bool
    deliveries: tuple[Delivery, ...]
    triage: str = "open"  # the triage label: "open", "in progress (ann)", "closed: …"

    @property
    def executable(self) -> str:
        return self.path or self.name


@dataclass(frozen=True)
class GroupRow:
    """One row of the signals list: a group of signals (one executable, several hosts),
    or a single signal."""

    id: str
    signals: int
    hosts: int
    latest: float
    max_score: float
    members: tuple[SignalRow, ...]

    @property
    def lead(self) -> SignalRow:
        return self.members[0]


@dataclass(frozen=True)
class SignalsPage:
    filters: SignalFilter
    groups: tuple[GroupRow, ...]
    total_signals: int
    total_groups: int
    per_page: int = PAGE_GROUPS
    older: Cursor | None = None  # where the next (older) page starts, if there is one
    newer: Cursor | None = None  # where the previous (newer) page ends, if there is one

    @property
    def has_more(self) -> bool:
        return self.older is not None


_ROW_SQL = (
    "SELECT s.id, s.host, s.name, s.path, s.bucket, s.score, s.created_at, "
    "coalesce(s.group_id, s.id), coalesce(json_extract(s.document, '$.kind'), ''), "
    "coalesce(json_extract(s.document, '$.reason'), ''), "
    "EXISTS (SELECT 1 FROM signal_acks a WHERE a.signal_id = s.id), t.state, t.resolution, "
    "t.assignee FROM signals AS s LEFT JOIN signal_triage AS t ON t.signal_id = s.id"
)


def _rows(store: Store, where: str, params: list[Any]) -> list[SignalRow]:
    rows = store.conn.execute(f"{_ROW_SQL} WHERE {where}", params).fetchall()
    deliveries = _deliveries(store, [str(r[0]) for r in rows])
    return [
        SignalRow(
            id=str(sid),
            host=str(host),
            name=str(name),
            path=str(path),
            bucket=int(bucket),
            score=float(score),
            created_at=float(created or 0),
            group=str(group),
            kind=str(kind),
            reason=str(reason),
            acknowledged=bool(acked),
            deliveries=deliveries.get(str(sid), ()),
            triage=triage.Triage(state or triage.OPEN, resolution, assignee).label,
        )
        for (
            sid, host, name, path, bucket, score, created, group, kind, reason, acked,
            state, resolution, assignee,
        ) in rows
    ]  # fmt: skip


def group_signal_ids(store: Store, groups: list[str], created_by: float) -> list[str]:
    """Every signal of the given groups (a row of the list is a group) created by
    `created_by` — when the list was shown: a later one was never seen."""
    found: list[str] = []
    for start in range(0, len(groups), 400):
        chunk = groups[start : start + 400]
        marks = ", ".join("?" * len(chunk))
        found += [
            str(r[0])
            for r in store.conn.execute(
                f"SELECT id FROM signals WHERE (group_id IN ({marks}) OR id IN ({marks})) "
                "AND created_at <= ?",
                [*chunk, *chunk, created_by],
            )
        ]
    return list(dict.fromkeys(found))


def _deliveries(store: Store, ids: list[str]) -> dict[str, tuple[Delivery, ...]]:
    found: dict[str, list[Delivery]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for sid, webhook, state, error in store.conn.execute(
            f"SELECT signal_id, webhook, state, last_error FROM deliveries "
            f"WHERE signal_id IN ({marks}) ORDER BY webhook",
            chunk,
        ):
            found.setdefault(str(sid), []).append(Delivery(str(webhook), str(state), error))
    return {sid: tuple(items) for sid, items in found.items()}


def signals_page(store: Store, filters: SignalFilter, per_page: int = PAGE_GROUPS) -> SignalsPage:
    """The signals list: one row per group, newest first, `per_page` groups from the
    filters' cursor on. Unfiltered, it reads the per-group summary the triggers keep
    (`signal_group`, by its (latest, group_id) index: a million signals page in
    milliseconds at any depth); a filter reads the signals it names."""
    where, params = filters.where()
    newer_first = filters.before is None
    cursor = filters.before if filters.before is not None else filters.after
    if where == NO_FILTER:
        total_signals, total_groups = store.conn.execute(
            "SELECT coalesce(sum(signals), 0), count(*) FROM signal_group"
        ).fetchone()
        heads = _unfiltered_heads(store, cursor, newer_first, per_page + 1)
    elif filters.score_only:
        total_signals, total_groups, heads = _score_heads(
            store, float(filters.min_score or 0), cursor, newer_first, per_page + 1
        )
    else:
        total_signals, total_groups = store.conn.execute(
            f"SELECT count(*), count(DISTINCT coalesce(s.group_id, s.id)) FROM signals AS s "
            f"WHERE {where}",
            params,
        ).fetchone()
        heads = _filtered_heads(store, where, params, cursor, newer_first, per_page + 1)
    beyond = len(heads) > per_page
    heads = heads[:per_page]
    if not newer_first:
        heads.reverse()
    places = [Cursor(float(h[3] or 0), str(h[0])) for h in heads]
    older = places[-1] if places and (beyond if newer_first else True) else None
    newer = places[0] if places and (filters.after is not None if newer_first else beyond) else None
    members = _members(store, where, params, [str(h[0]) for h in heads])
    groups = tuple(
        GroupRow(
            id=str(g),
            signals=int(n),
            hosts=int(hosts),
            latest=float(latest or 0),
            max_score=float(top),
            members=tuple(sorted(members.get(str(g), []), key=lambda r: (-r.created_at, r.id))),
        )
        for g, n, hosts, latest, top in heads
        if members.get(str(g))
    )
    return SignalsPage(
        filters, groups, int(total_signals), int(total_groups), per_page, older, newer
    )


def _keyset(cursor: Cursor | None, newer_first: bool, key: str) -> tuple[str, str, tuple[Any, ...]]:
    """Keyset paging on `key`, an SQL (latest, group) row value: the condition past
    `cursor` ("" without one), the order (older ones newest first, or — not
    `newer_first` — newer ones oldest first) and the condition's parameters."""
    side, order = ("<", "DESC") if newer_first else (">", "ASC")
    if cursor is None:
        return "", order, ()
    return f"{key} {side} (?, ?)", order, (cursor.latest, cursor.group)


def _unfiltered_heads(
    store: Store, cursor: Cursor | None, newer_first: bool, limit: int
) -> list[Any]:
    """Up to `limit` groups from `signal_group` past `cursor`: older ones, newest first,
    or (not `newer_first`) newer ones, oldest first."""
    past, order, params = _keyset(cursor, newer_first, "(g.latest, g.group_id)")
    return store.conn.execute(
        "SELECT g.group_id, g.signals, (SELECT count(*) FROM signal_group_host AS h "
        f"WHERE h.group_id = g.group_id), g.latest, g.max_score FROM signal_group AS g "
        f"WHERE {past or NO_FILTER} ORDER BY g.latest {order}, g.group_id {order} LIMIT ?",
        (*params, limit),
    ).fetchall()


def _score_heads(
    store: Store, min_score: float, cursor: Cursor | None, newer_first: bool, limit: int
) -> tuple[int, int, list[Any]]:
    """Totals and up to `limit` heads for a score filter alone, by index: the groups
    whose highest score reaches it (walked in `signal_group`'s order, so a group sorts
    by its latest signal), each counted over its signals that reach it."""
    total_signals = store.conn.execute(
        "SELECT count(*) FROM signals WHERE score >= ?", (min_score,)
    ).fetchone()[0]
    total_groups = store.conn.execute(
        "SELECT count(*) FROM signal_group WHERE max_score >= ?", (min_score,)
    ).fetchone()[0]
    past, order, params = _keyset(cursor, newer_first, "(g.latest, g.group_id)")
    groups = store.conn.execute(
        "SELECT g.group_id, g.latest FROM signal_group AS g WHERE g.max_score >= ? AND "
        f"{past or NO_FILTER} ORDER BY g.latest {order}, g.group_id {order} LIMIT ?",
        (min_score, *params, limit),
    ).fetchall()
    heads = []
    for group, latest in groups:
        n, hosts, top = store.conn.execute(
            "SELECT count(*), count(DISTINCT host), max(score) FROM signals "
            "WHERE (group_id = ? OR id = ?) AND score >= ?",
            (group, group, min_score),
        ).fetchone()
        heads.append((group, n, hosts, latest, top))
    return int(total_signals), int(total_groups), heads


def _filtered_heads(
    store: Store,
    where: str,
    params: list[Any],
    cursor: Cursor | None,
    newer_first: bool,
    limit: int,
) -> list[Any]:
    """As `_unfiltered_heads`, for the groups of the signals matching `where`."""
    past, order, cursor_params = _keyset(cursor, newer_first, "(max(s.created_at), g)")
    having = f"HAVING {past}" if past else ""
    return store.conn.execute(
        f"SELECT coalesce(s.group_id, s.id) AS g, count(*), count(DISTINCT s.host), "
        f"max(s.created_at), max(s.score) FROM signals AS s WHERE {where} "
        f"GROUP BY g {having} ORDER BY max(s.created_at) {order}, g {order} LIMIT ?",
        (*params, *cursor_params, limit),
    ).fetchall()


def _members(
    store: Store, where: str, params: list[Any], groups: list[str]
) -> dict[str, list[SignalRow]]:
    """The newest `MEMBERS_SHOWN` matching signals of each group, by group."""
    members: dict[str, list[SignalRow]] = {}
    if not groups:
        return members
    marks = ", ".join("?" * len(groups))
    ranked = (
        f"s.id IN (SELECT id FROM (SELECT s.id, row_number() OVER (PARTITION BY "
        f"coalesce(s.group_id, s.id) ORDER BY s.created_at DESC, s.id) AS n FROM signals AS s "
        f"WHERE {where} AND (s.group_id IN ({marks}) OR s.id IN ({marks}))) "
        f"WHERE n <= {MEMBERS_SHOWN})"
    )
    for row in _rows(store, ranked, [*params, *groups, *groups]):
        members.setdefault(row.group, []).append(row)
    return members


def signals_of(store: Store, where: str, params: list[Any], limit: int) -> list[SignalRow]:
    """Signals matching a condition on `signals AS s`, newest first."""
    return _rows(store, f"{where} ORDER BY s.created_at DESC, s.id LIMIT {int(limit)}", params)


def acknowledge(
    store: Store,
    sid: str,
    now: float,
    who: Principal | None = None,
    verdict: str | None = None,
) -> bool:
    """Acknowledge a signal as `who` (audited), or with a verdict close it: "benign" as a
    false positive (its binary is routine on its host again), "attack" as a true
    positive (the binary stays a suspect there: baseline/detect/suspects.py). False when
    nothing changed (it already was)."""
    if verdict is not None and verdict not in VERDICTS:
        raise InputError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    by = who or cli_principal()
    if verdict is None:
        done = triage.acknowledge(store, [sid], by, now)
    else:
        resolution = triage.FALSE_POSITIVE if verdict == BENIGN else triage.TRUE_POSITIVE
        done = triage.close(store, [sid], resolution, by, now)
    return bool(done.changed)


def verdict_of(store: Store, sid: str) -> str | None:
    """The acknowledgement's verdict: "benign", "attack", or None (none, or not acked)."""
    row = store.conn.execute(
        "SELECT verdict FROM signal_acks WHERE signal_id = ?", (sid,)
    ).fetchone()
    return None if row is None else row[0]


def counted_on(store: Store, sid: str) -> int:
    """Candidates counted on the signal instead of raising their own (`suppressed_count`):
    its binary's later use on the host, a rollout's or upgrade's further hosts."""
    row = store.conn.execute("SELECT suppressed_count FROM signals WHERE id = ?", (sid,)).fetchone()
    return 0 if row is None else int(row[0])


# -- series for plots --------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """Hosts per bucket for one key, beside the fleet's reporting hosts."""

    start: int
    end: int
    span: int
    points: tuple[tuple[int, int], ...]  # (bucket, hosts using the key)
    fleet: tuple[tuple[int, int], ...]  # (bucket, hosts reporting)


def key_kind(key: str) -> str:
    """ "path" for an absolute path, else "name"."""
    return "path" if key.startswith("/") else "name"


def presence_series(store: Store, span: int, key: str, start: int, end: int) -> Series:
    """Hosts using `key` (path or name) per bucket in [start, end)."""
    points = store.conn.execute(
        "SELECT bucket, hosts FROM key_bucket WHERE span = ? AND kind = ? AND key = ? "
        "AND bucket >= ? AND bucket < ? ORDER BY bucket",
        (span, key_kind(key), key, start, end),
    ).fetchall()
    fleet = store.conn.execute(
        "SELECT bucket, hosts FROM fleet_bucket WHERE span = ? AND bucket >= ? AND bucket < ? "
        "ORDER BY bucket",
        (span, start, end),
    ).fetchall()
    return Series(start, end, span, tuple((int(b), int(h)) for b, h in points), tuple(fleet))


@dataclass(frozen=True)
class TimelineRow:
    name: str
    path: str
    buckets: tuple[int, ...]
    highlighted: bool


@dataclass(frozen=True)
class Timeline:
    start: int
    end: int
    span: int
    rows: tuple[TimelineRow, ...]
    marker: int | None  # the signal's bucket
    omitted: int  # binaries not drawn


def host_timeline(
    store: Store, span: int, host: str, start: int, end: int, *, mark: tuple[str, int] | None
) -> Timeline:
    """The buckets in which each of `host`'s binaries used the network in [start, end);
    `mark` = (executable, bucket) is always drawn and highlighted."""
    found: dict[tuple[str, str], list[int]] = {}
    for name, path, bucket in store.conn.execute(
        "SELECT name, path, bucket FROM presence WHERE span = ? AND host = ? "
        "AND bucket >= ? AND bucket < ? ORDER BY path, bucket",
        (span, host, start, end),
    ):
        found.setdefault((str(name), str(path)), []).append(int(bucket))
    marked = mark[0] if mark else None
    order = sorted(found.items(), key=lambda item: (marked not in item[0], -len(item[1]), item[0]))
    rows = tuple(
        TimelineRow(name, path, tuple(buckets), marked in (name, path))
        for (name, path), buckets in order[:TIMELINE_ROWS]
    )
    return Timeline(
        start, end, span, rows, mark[1] if mark else None, max(0, len(order) - TIMELINE_ROWS)
    )


# -- host and binary pages ---------------------------------------------------------------


@dataclass(frozen=True)
class HostBinary:
    name: str
    path: str
    first_bucket: int
    last_bucket: int
    buckets: int


@dataclass(frozen=True)
class HostPage:
    host: str
    binaries: tuple[HostBinary, ...]
    total_binaries: int
    signals: tuple[SignalRow, ...]
    timeline: Timeline
    known: bool


def host_page(store: Store, span: int, host: str) -> HostPage:
    """One host: the binaries it ran with the network (first/last seen), its signals and
    its last day's timeline."""
    rows = store.conn.execute(
        "SELECT name, path, min(bucket), max(bucket), count(*) FROM presence "
        "WHERE span = ? AND host = ? GROUP BY name, path ORDER BY min(bucket) DESC, path",
        (span, host),
    ).fetchall()
    binaries = tuple(HostBinary(str(n), str(p), int(a), int(b), int(c)) for n, p, a, b, c in rows)
    newest = max((b.last_bucket for b in binaries), default=0)
    timeline = host_timeline(store, span, host, newest - 86400 + span, newest + span, mark=None)
    signals = signals_of(store, "s.host = ?", [host], 200)
    return HostPage(
        host=host,
        binaries=binaries[:BINARIES_SHOWN],
        total_binaries=len(binaries),
        signals=tuple(signals),
        timeline=timeline,
        known=bool(binaries) or bool(signals),
    )


@dataclass(frozen=True)
class KeyHost:
    host: str
    first_bucket: int
    last_bucket: int


@dataclass(frozen=True)
class BinaryPage:
    key: str
    kind: str
    series: Series
    hosts: tuple[KeyHost, ...]
    total_hosts: int
    aliases: tuple[str, ...]  # paths seen under a name, or names seen at a path
    signals: tuple[SignalRow, ...]
    known: bool


def binary_page(store: Store, span: int, history: int, key: str) -> BinaryPage:
    """One binary (a path, or a process name): hosts using it per bucket over the baseline
    window, the hosts, the paths seen under the name (or names at the path), its signals."""
    kind = key_kind(key)
    newest = store.conn.execute(
        "SELECT max(bucket) FROM fleet_bucket WHERE span = ?", (span,)
    ).fetchone()[0]
    end = (int(newest) if newest is not None else 0) + span
    series = presence_series(store, span, key, end - history, end)
    rows = store.conn.execute(
        "SELECT host, first_bucket, last_bucket FROM key_host WHERE span = ? AND kind = ? "
        "AND key = ? ORDER BY last_bucket DESC, host",
        (span, kind, key),
    ).fetchall()
    if kind == "name":
        aliases = store.conn.execute(
            "SELECT path FROM name_path WHERE span = ? AND name = ? ORDER BY path LIMIT 100",
            (span, key),
        ).fetchall()
        where = "s.name = ?"
    else:
        aliases = store.conn.execute(
            "SELECT name FROM name_path WHERE span = ? AND path = ? ORDER BY name LIMIT 100",
            (span, key),
        ).fetchall()
        where = "s.path = ?"
    signals = signals_of(store, where, [key], 200)
    return BinaryPage(
        key=key,
        kind=kind,
        series=series,
        hosts=tuple(KeyHost(str(h), int(a), int(b)) for h, a, b in rows[:HOSTS_SHOWN]),
        total_hosts=len(rows),
        aliases=tuple(str(a[0]) for a in aliases),
        signals=tuple(signals),
        known=bool(rows) or bool(signals),
    )


def signals_json(page: SignalsPage, learning: Learning) -> dict[str, Any]:
    """The signals list's JSON twin: the page's groups with their signals' triage."""
    return {
        "total_signals": page.total_signals,
        "total_groups": page.total_groups,
        "learning": {"buckets": learning.buckets, "needed": learning.needed},
        "older": page.filters.query(after=page.older.text, before="") | {"format": "json"}
        if page.older
        else None,
        "groups": [
            {
                "id": group.id,
                "signals": group.signals,
                "hosts": group.hosts,
                "max_score": group.max_score,
                "members": [
                    {
                        "id": m.id,
                        "host": m.host,
                        "executable": m.executable,
                        "bucket": format_time(m.bucket),
                        "score": m.score,
                        "triage": m.triage,
                    }
                    for m in group.members
                ],
            }
            for group in page.groups
        ],
    }


# -- learning --------------------------------------------------------------------------


@dataclass(frozen=True)
class Learning:
    """How far the rule is from its first possible signal: shown on the home page."""

    buckets: int  # buckets of fleet history so far
    needed: int  # [detect] warmup_buckets
    span: int  # seconds per bucket
    hosts: int

    @property
    def done(self) -> bool:
        return self.buckets >= self.needed

    @property
    def seconds_left(self) -> int:
        return max(0, self.needed - self.buckets) * self.span


def learning_state(store: Store, span: int, warmup_buckets: int) -> Learning:
    """Buckets of fleet history against the warm-up, and the hosts seen."""
    buckets, hosts = store.conn.execute(
        "SELECT (SELECT count(*) FROM fleet_bucket WHERE span = :span), "
        "(SELECT count(*) FROM host_last WHERE span = :span)",  # one row per host: cheap
        {"span": span},
    ).fetchone()
    return Learning(int(buckets), warmup_buckets, span, int(hosts))


# -- health ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthPage:
    observations: int
    newest: int | None
    hourly: tuple[tuple[int, int], ...]  # (hour, observations) over the newest day of data
    quarantined: int
    quarantine_dropped: int
    latest_rejects: tuple[dict[str, Any], ...]
    runs: tuple[dict[str, Any], ...]
    failures: tuple[dict[str, Any], ...]  # deliveries retrying, failed or dead
    fleet_buckets: int
    warmup_buckets: int
    hosts: int
    excepted: ExceptedShare = field(default=ExceptedShare(0, 0))  # the last day of runs
    broad_exceptions: tuple[dict[str, Any], ...] = field(default=())
    problems: tuple[dict[str, Any], ...] = field(default=())  # /healthz failures
    arrivals: Arrivals = field(default=Arrivals())  # late data and silent hosts

    @property
    def learning(self) -> str | None:
        if self.fleet_buckets >= self.warmup_buckets:
            return None
        return f"learning: {self.fleet_buckets}/{self.warmup_buckets} buckets"


def health_page(store: Store, span: int, warmup_buckets: int) -> HealthPage:
    """Ingest, quarantine, late data and silent hosts, detection runs, delivery
    failures and learning progress."""
    conn = store.conn
    newest = conn.execute("SELECT max(time) FROM observations").fetchone()[0]
    observations = conn.execute("SELECT max(id) FROM observations").fetchone()[0] or 0
    hourly: list[tuple[int, int]] = []
    if newest is not None:
        hourly = [
            (int(h), int(n))
            for h, n in conn.execute(
                "SELECT time / 3600 * 3600 AS hour, count(*) FROM observations "
                "WHERE time > ? GROUP BY hour ORDER BY hour",
                (int(newest) - 86400,),
            )
        ]
    rejects = conn.execute(
        "SELECT source, line, reason, received_at FROM quarantine ORDER BY id DESC LIMIT 10"
    ).fetchall()
    runs = _dicts(
        conn,
        "SELECT id, started_at, data_time, window_start, duration, candidates, signals, "
        "truncated, suppressed, excepted, status, error, catch_up, late, behind "
        "FROM runs ORDER BY id DESC LIMIT 20",
    )
    failures = _dicts(
        conn,
        "SELECT signal_id, webhook, state, attempts, last_status, last_error, last_attempt_at "
        "FROM deliveries WHERE state IN ('retrying', 'failed', 'dead') "
        "ORDER BY last_attempt_at DESC LIMIT 20",
    )
    return HealthPage(
        observations=int(observations),
        newest=None if newest is None else int(newest),
        hourly=tuple(hourly),
        quarantined=int(conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]),
        quarantine_dropped=int(
            conn.execute("SELECT coalesce(sum(dropped), 0) FROM quarantine_overflow").fetchone()[0]
        ),
        latest_rejects=tuple(
            {"source": s, "line": line, "reason": r, "received_at": at}
            for s, line, r, at in rejects
        ),
        runs=tuple(runs),
        failures=tuple(failures),
        fleet_buckets=int(
            conn.execute("SELECT count(*) FROM fleet_bucket WHERE span = ?", (span,)).fetchone()[0]
        ),
        warmup_buckets=warmup_buckets,
        hosts=int(
            conn.execute(
                "SELECT count(DISTINCT host) FROM host_bucket WHERE span = ?", (span,)
            ).fetchone()[0]
        ),
        excepted=excepted_last_day(store),
        broad_exceptions=tuple(broad_exceptions(store)),
        arrivals=arrivals(conn, span),
    )


def _dicts(conn: Any, sql: str) -> list[dict[str, Any]]:
    cursor = conn.execute(sql)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
