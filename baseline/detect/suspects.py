"""Suspects: binaries that an open signal keeps out of the baseline on their host.

A host signal (not a rollout's, and not one raised while the fleet's baseline is younger
than a day, when everything is new) makes its (host, name, path) a *suspect* from its
bucket on. While it is one, that binary's presence on that host in and after that bucket is no
evidence of normal: it counts neither as the host's habit (familiarity, host novelty)
nor towards the fleet's presence of its path and name (host-buckets, hosts, first
seen). An attacker who comes back is judged as on the first visit; the return is a new
signal in the first visit's group, and use that simply goes on is counted on the open
signal (baseline/detect/decide.py).

A suspect ends when a person closes its signal as benign (acknowledged as benign, or an
active exception covers the signal), or when it *settles* without a person
(`settles`, docs/scoring.md "Returning attackers"):

* volatile or hidden location: never (droppers live there);
* package-managed path: the fleet adopted it (the path is routine among hosts without
  an open signal for it, and one of them used it first after the signal: an upgrade
  or a rollout whose first host signalled), a peer of the host (baseline/detect/
  peers.py) without an open signal for it uses it routinely (the other CI runner's
  JDK), or it was used on the host on three occasions at least half a day apart (a
  new service or job of that host's own);
* /usr/local or an unknown place: used on the host on two occasions;
* home directory (outside dot-directories, which are hidden): its first use — a
  person's own tool is theirs from then on, even after a quiet weekend.

An occasion is a use at least half a day (history/28) after the one before; each one
that follows a quiet `suppress_for` is a new signal, so an attacker reaches routine
only by being signalled, or by staying in plain sight on the open signal.
"""

from __future__ import annotations

import fnmatch
import sqlite3
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from rarenet.baseline.detect.exceptions import Exception_, matches_document
from rarenet.baseline.detect.signal import RULE_ID
from rarenet.extension.locations import Location, classify

OCCASION_SHARE = 1 / 28  # uses this far apart (12 h of a 14-day history) are two occasions
# occasions after which a binary is the host's own, by location (volatile: never)
SETTLING_OCCASIONS = {Location.PACKAGE: 3, Location.USER: 1, Location.LOCAL: 2}
DEFAULT_OCCASIONS = 2  # an unknown location
BENIGN = "benign"  # the acknowledgement verdict that closes a suspect
VERDICTS = (BENIGN, "attack")


@dataclass(frozen=True)
class Suspect:
    """A binary on a host with open signals: since the first open one's bucket."""

    host: str
    name: str
    path: str
    since: int  # bucket of the first open signal
    latest: int  # bucket of the latest signal
    first_signal: str
    latest_signal: str
    group: str  # the first open signal's group: returns join it
    signals: int  # open signals of this binary on this host
    chain: tuple[tuple[int, str, str], ...] = ()  # (bucket, id, group) of the open signals

    @property
    def executable(self) -> str:
        """The key signals are suppressed and grouped by: the path, else the name."""
        return self.path or self.name

    def as_of(self, bucket: int) -> Suspect:
        """The suspect as a run scoring `bucket` saw it: its open signals before that
        bucket (signals raised later in data time, e.g. by the look-back of later runs,
        are not its past). Itself when none is later; `since` must be before `bucket`."""
        before = tuple(link for link in self.chain if link[0] < bucket)
        if len(before) == len(self.chain) or not before:
            return self
        return _suspect((self.host, self.name, self.path), list(before))


class Suspects:
    """The open suspects of a store, looked up by (host, name, path), path or name."""

    def __init__(self, items: Iterable[Suspect] = ()) -> None:
        self.by_pair = {(s.host, s.name, s.path): s for s in items}
        self.by_path: dict[str, list[Suspect]] = {}
        self.by_name: dict[str, list[Suspect]] = {}
        for suspect in self.by_pair.values():
            if suspect.path:
                self.by_path.setdefault(suspect.path, []).append(suspect)
            self.by_name.setdefault(suspect.name, []).append(suspect)

    def __len__(self) -> int:
        return len(self.by_pair)

    def pair(self, host: str, name: str, path: str) -> Suspect | None:
        """The suspect for this binary on this host, if any."""
        return self.by_pair.get((host, name, path))

    def on_key(self, kind: str, key: str) -> list[Suspect]:
        """Suspects whose path (kind "path") or name (kind "name") is `key`."""
        return (self.by_path if kind == "path" else self.by_name).get(key, [])


NO_SUSPECTS = Suspects()


def open_suspects(conn: sqlite3.Connection, exceptions: Sequence[Exception_]) -> Suspects:
    """Every binary on a host with an open host signal: walking each one's signals in
    bucket order, one closed as benign (or covered by an exception in `exceptions`)
    releases everything up to it; the open ones after it make the suspect."""
    rows = conn.execute(
        "SELECT s.host, s.name, s.path, s.bucket, s.id, coalesce(s.group_id, s.id), "
        "a.verdict, CASE WHEN ? THEN s.document END FROM signals AS s "
        "LEFT JOIN signal_acks AS a ON a.signal_id = s.id "
        "WHERE s.rule = ? AND s.suspect = 1 ORDER BY s.host, s.path, s.name, s.bucket, s.id",
        (bool(exceptions), RULE_ID),
    )
    found: list[Suspect] = []
    pair: tuple[str, str, str] | None = None
    chain: list[tuple[int, str, str]] = []
    for host, name, path, bucket, sid, group, verdict, document in rows:
        if (host, name, path) != pair:
            _close_chain(pair, chain, found)
            pair, chain = (host, name, path), []
        if verdict == BENIGN or _excepted(exceptions, document, host, name, path):
            chain = []
        else:
            chain.append((int(bucket), str(sid), str(group)))
    _close_chain(pair, chain, found)
    return Suspects(found)


def _close_chain(
    pair: tuple[str, str, str] | None, chain: list[tuple[int, str, str]], out: list[Suspect]
) -> None:
    if pair is None or not chain:
        return
    out.append(_suspect(pair, chain))


def _suspect(pair: tuple[str, str, str], chain: list[tuple[int, str, str]]) -> Suspect:
    (since, first, group), (latest, last, _) = chain[0], chain[-1]
    return Suspect(*pair, since, latest, first, last, group, len(chain), tuple(chain))


def _excepted(
    exceptions: Sequence[Exception_], document: str | None, host: str, name: str, path: str
) -> bool:
    if not exceptions or document is None:
        return False
    pinned = [e for e in exceptions if _may_match(e, host, name, path)]
    if not pinned:
        return False  # no need to read the document
    doc: dict[str, Any] = orjson.loads(document)
    return any(matches_document(entry, doc, host, name, path) for entry in pinned)


def _may_match(entry: Exception_, host: str, name: str, path: str) -> bool:
    """The exception's binary and host conditions hold (its connection ones are checked
    against the document)."""
    return all(
        pattern is None or fnmatch.fnmatchcase(value, pattern)
        for pattern, value in ((entry.name, name), (entry.path_glob, path), (entry.host, host))
    )


@dataclass(frozen=True)
class Usage:
    """One suspect's use of its binary in one baseline window [low, high): what its
    open signal keeps out of the window (buckets at or after `since`) and what stays."""

    path_buckets: int  # buckets with the path on the host, since `since`
    name_buckets: int  # buckets with the name (through this path only), since `since`
    path_clean: bool  # the host used the path before `since` in the window
    name_clean: bool  # … the name before `since`, or through another path
    occasions: int  # uses of the binary since `since`, at least half a day apart
    path_first: int | None  # first / last kept-out bucket of the path
    path_last: int | None
    name_first: int | None
    name_last: int | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Usage:
        """From a source's JSON-shaped answer."""
        return cls(*row)

    def merged(self, other: Usage) -> Usage:
        """Summed over shards (only the shard holding the host answers non-zero)."""
        return Usage(
            self.path_buckets + other.path_buckets,
            self.name_buckets + other.name_buckets,
            self.path_clean or other.path_clean,
            self.name_clean or other.name_clean,
            self.occasions + other.occasions,
            least(self.path_first, other.path_first),
            most(self.path_last, other.path_last),
            least(self.name_first, other.name_first),
            most(self.name_last, other.name_last),
        )


EMPTY_USAGE = Usage(0, 0, False, False, 0, None, None, None, None)


def usage_in(
    conn: sqlite3.Connection, span: int, history: int, ask: Sequence[Any]
) -> list[list[Any]]:
    """A suspect's Usage in the baseline window [bucket - history, bucket) of each of
    its `buckets`, from this store's presence, as JSON rows. `ask` is (host, name,
    path, since, buckets); two index seeks over the windows' union."""
    host, name, path, since, buckets = ask
    low, high = min(buckets) - history, max(buckets)
    path_rows = (
        conn.execute(
            "SELECT bucket FROM presence INDEXED BY presence_host_path WHERE span = ? "
            "AND host = ? AND path = ? AND bucket >= ? AND bucket < ?",
            (span, host, path, low, high),
        ).fetchall()
        if path
        else []
    )
    name_rows = conn.execute(
        "SELECT p.bucket, p.path FROM name_path AS np JOIN presence AS p "
        "INDEXED BY presence_host_path ON p.span = np.span AND p.host = ? "
        "AND p.path = np.path AND p.name = np.name "
        "WHERE np.span = ? AND np.name = ? AND p.bucket >= ? AND p.bucket < ?",
        (host, span, name, low, high),
    ).fetchall()
    on_path = sorted({b for (b,) in path_rows})
    other_path = sorted({b for b, p in name_rows if p != path})
    own = sorted({b for b, p in name_rows if p == path})
    gap = occasion_gap(span, history)
    return [
        _window_usage(since, bucket - history, bucket, on_path, own, other_path, gap)
        for bucket in buckets
    ]


def occasion_gap(span: int, history: int) -> int:
    """How far apart two uses are two occasions: half a day of a 14-day history."""
    return max(span, int(history * OCCASION_SHARE))


def _window_usage(
    since: int,
    low: int,
    high: int,
    on_path: list[int],
    own: list[int],
    other_path: list[int],
    gap: int,
) -> list[Any]:
    """Usage in [low, high) from the host's sorted buckets with the path (`on_path`),
    with this binary (`own`) and with the name through another path (`other_path`)."""
    start = max(low, since)
    after_path = _between(on_path, start, high)
    mine = _between(own, start, high)
    elsewhere = set(_between(other_path, start, high))
    after_name = [b for b in mine if b not in elsewhere]
    occasions = count_occasions(mine, gap)
    return [
        len(after_path),
        len(after_name),
        bool(_between(on_path, low, min(high, since))),
        bool(_between(own, low, min(high, since)) or _between(other_path, low, high)),
        occasions,
        after_path[0] if after_path else None,
        after_path[-1] if after_path else None,
        after_name[0] if after_name else None,
        after_name[-1] if after_name else None,
    ]


def count_occasions(buckets: Sequence[int], gap: int) -> int:
    """Uses in sorted buckets that come at least `gap` after the use before them."""
    return sum(1 for i, b in enumerate(buckets) if i == 0 or b - buckets[i - 1] >= gap)


def _between(ordered: list[int], low: int, high: int) -> list[int]:
    """The items of a sorted list in [low, high)."""
    return ordered[bisect_left(ordered, low) : bisect_left(ordered, high)]


def settles(suspect: Suspect, usage: Usage, adopted: bool, peer: bool = False) -> bool:
    """Whether the suspect has become the host's routine without a person at this
    bucket (module docstring): never from a volatile or hidden place; by fleet adoption
    (`adopted`), by a peer's routine use (`peer`) or a third occasion for a package
    path; by a second occasion from /usr/local or an unknown place; from a home
    directory as soon as it is used again."""
    where = classify(suspect.path)
    if where is Location.VOLATILE:
        return False
    if where is Location.PACKAGE and (adopted or peer):
        return True
    return usage.occasions >= SETTLING_OCCASIONS.get(where, DEFAULT_OCCASIONS)


def least(a: int | None, b: int | None) -> int | None:
    """The smaller of two optional buckets (None: not seen)."""
    return b if a is None else a if b is None else min(a, b)


def most(a: int | None, b: int | None) -> int | None:
    """The larger of two optional buckets (None: not seen)."""
    return b if a is None else a if b is None else max(a, b)
