"""Triage: a signal's state from open to closed, who has it, and what was said about it.

    open ──ack──▶ acknowledged ──assign──▶ in progress ──close──▶ closed (true/false positive)
      └───────────────assign / close from any state that is not closed─────────┘

The console, the CLI (`rarenet signals ack|assign|close|comment`) and the API (the
console's POST routes with a personal API token) all change state here, one transaction
per change with its audit row. Closing also writes the acknowledgement's verdict the rule
reads (baseline/detect/suspects.py): a false positive releases the binary on its host
(`benign`), a true positive keeps it a suspect (`attack`). A closed signal stays closed:
acting on it again is refused, so a bulk action over a page never rewrites a verdict.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from rarenet.baseline.access.audit import record
from rarenet.baseline.access.roles import Principal
from rarenet.baseline.detect.suspects import BENIGN
from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store

OPEN, ACKNOWLEDGED, IN_PROGRESS, CLOSED = "open", "acknowledged", "in_progress", "closed"
STATES = (OPEN, ACKNOWLEDGED, IN_PROGRESS, CLOSED)
TRUE_POSITIVE, FALSE_POSITIVE = "true_positive", "false_positive"
RESOLUTIONS = (TRUE_POSITIVE, FALSE_POSITIVE)
VERDICT_OF = {FALSE_POSITIVE: BENIGN, TRUE_POSITIVE: "attack"}
MAX_COMMENT = 4000  # characters of one comment


@dataclass(frozen=True)
class Triage:
    """Where a signal stands: its state, a closed one's resolution, its assignee."""

    state: str = OPEN
    resolution: str | None = None
    assignee: str | None = None
    updated_at: float | None = None
    updated_by: str | None = None
    comments: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "resolution": self.resolution,
            "assignee": self.assignee,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "comments": self.comments,
        }

    @property
    def label(self) -> str:
        """ "closed: false positive", "in progress (ann)", "open"."""
        if self.state == CLOSED and self.resolution:
            return f"closed: {self.resolution.replace('_', ' ')}"
        words = self.state.replace("_", " ")
        return f"{words} ({self.assignee})" if self.assignee else words


@dataclass(frozen=True)
class Comment:
    id: int
    at: float
    author: str
    text: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "author": self.author, "text": self.text}


def triage_of(conn: sqlite3.Connection, sids: Sequence[str]) -> dict[str, Triage]:
    """Each signal's triage (open when nobody acted on it), read in one query."""
    if not sids:
        return {}
    found = {sid: Triage() for sid in sids}
    rows = conn.execute(
        "SELECT j.value, t.state, t.resolution, t.assignee, t.updated_at, t.updated_by, "
        "(SELECT count(*) FROM signal_comments c WHERE c.signal_id = j.value) "
        "FROM json_each(?) AS j LEFT JOIN signal_triage t ON t.signal_id = j.value",
        (_json_list(sids),),
    )
    for sid, state, resolution, assignee, at, by, comments in rows:
        found[sid] = Triage(state or OPEN, resolution, assignee, at, by, int(comments))
    return found


def comments_of(store: Store, sid: str) -> list[Comment]:
    """A signal's comments, oldest first."""
    rows = store.conn.execute(
        "SELECT id, at, author, text FROM signal_comments WHERE signal_id = ? ORDER BY id",
        (sid,),
    )
    return [Comment(int(i), float(at), str(a), str(t)) for i, at, a, t in rows]


@dataclass(frozen=True)
class Changed:
    """What one triage action did: the signals it changed, and those it left (closed
    already, or already in that state) with why."""

    changed: tuple[str, ...]
    unchanged: tuple[tuple[str, str], ...] = ()


def acknowledge(store: Store, sids: Iterable[str], who: Principal, now: float) -> Changed:
    """Open signals become acknowledged (someone has looked)."""
    return _change(store, sids, who, now, "signal.acknowledge", _acknowledged)


def assign(store: Store, sids: Iterable[str], assignee: str, who: Principal, now: float) -> Changed:
    """Signals not closed go to `assignee` (a console user), in progress."""
    name = assignee.strip()
    if not name or len(name) > 100:
        raise InputError("name the console user to assign to", where="assignee")
    known = store.conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
    if known is None:
        users = [str(r[0]) for r in store.conn.execute("SELECT name FROM users ORDER BY name")]
        raise InputError(
            f"no console user {name!r}",
            where="assignee",
            hint=f"users: {', '.join(users)}" if users else "add one: rarenet users add NAME",
        )
    return _change(
        store, sids, who, now, "signal.assign", lambda t: _assigned(t, name), {"assignee": name}
    )


def close(
    store: Store,
    sids: Iterable[str],
    resolution: str,
    who: Principal,
    now: float,
    comment: str | None = None,
) -> Changed:
    """Signals not closed are closed as a true or a false positive; the acknowledgement's
    verdict follows (a false positive releases the binary on its host)."""
    if resolution not in RESOLUTIONS:
        raise InputError(
            f"close as one of {', '.join(r.replace('_', '-') for r in RESOLUTIONS)}, "
            f"not {resolution!r}",
            where="resolution",
        )
    text = _comment_text(comment) if comment else None
    done = _change(
        store, sids, who, now, "signal.close", lambda t: _closed(t, resolution),
        {"resolution": resolution}, comment=text,
    )  # fmt: skip
    return done


def comment(store: Store, sid: str, text: str, who: Principal, now: float) -> int:
    """Add a comment to a signal (closed ones too); its id."""
    body = _comment_text(text)
    with store.transaction() as conn:
        _exists(conn, [sid])
        cursor = conn.execute(
            "INSERT INTO signal_comments (signal_id, at, author, text) VALUES (?, ?, ?, ?)",
            (sid, now, who.name, body),
        )
        record(conn, who, "signal.comment", f"signal:{sid}", {"summary": body[:120]}, now=now)
        return int(cursor.lastrowid or 0)


# -- state changes ----------------------------------------------------------------------


def _acknowledged(current: Triage) -> tuple[Triage | None, str]:
    if current.state != OPEN:
        return None, f"already {current.label}"
    return Triage(ACKNOWLEDGED), ""


def _assigned(current: Triage, name: str) -> tuple[Triage | None, str]:
    if current.state == CLOSED:
        return None, f"already {current.label}"
    if current.state == IN_PROGRESS and current.assignee == name:
        return None, f"already in progress ({name})"
    return Triage(IN_PROGRESS, assignee=name), ""


def _closed(current: Triage, resolution: str) -> tuple[Triage | None, str]:
    if current.state == CLOSED:
        return None, f"already {current.label}"
    return Triage(CLOSED, resolution, current.assignee), ""


def _change(
    store: Store,
    sids: Iterable[str],
    who: Principal,
    now: float,
    action: str,
    step: Any,
    detail: dict[str, Any] | None = None,
    comment: str | None = None,
) -> Changed:
    wanted = list(dict.fromkeys(sids))
    if not wanted:
        raise InputError("name at least one signal")
    changed: list[str] = []
    unchanged: list[tuple[str, str]] = []
    with store.transaction() as conn:
        _exists(conn, wanted)
        for sid, current in triage_of(conn, wanted).items():
            after, why = step(current)
            if after is None:
                unchanged.append((sid, why))
                continue
            _write(conn, sid, after, who, now)
            if comment:
                conn.execute(
                    "INSERT INTO signal_comments (signal_id, at, author, text) VALUES (?, ?, ?, ?)",
                    (sid, now, who.name, comment),
                )
            summary = after.label + (f": {comment[:80]}" if comment else "")
            record(conn, who, action, f"signal:{sid}", {**(detail or {}), "summary": summary},
                   now=now)  # fmt: skip
            changed.append(sid)
    return Changed(tuple(changed), tuple(unchanged))


def _write(conn: sqlite3.Connection, sid: str, after: Triage, who: Principal, now: float) -> None:
    """The new state, and the acknowledgement the rule reads (its verdict when closed)."""
    conn.execute(
        "INSERT INTO signal_triage (signal_id, state, resolution, assignee, updated_at, "
        "updated_by) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (signal_id) DO UPDATE SET "
        "state = excluded.state, resolution = excluded.resolution, "
        "assignee = excluded.assignee, updated_at = excluded.updated_at, "
        "updated_by = excluded.updated_by",
        (sid, after.state, after.resolution, after.assignee, now, who.name),
    )
    verdict = VERDICT_OF.get(after.resolution or "")
    conn.execute(
        "INSERT INTO signal_acks (signal_id, acknowledged_at, acknowledged_by, verdict) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (signal_id) DO UPDATE SET "
        "verdict = coalesce(excluded.verdict, verdict)",
        (sid, now, who.name, verdict),
    )


def _exists(conn: sqlite3.Connection, sids: Sequence[str]) -> None:
    found = {
        str(row[0])
        for row in conn.execute(
            "SELECT s.id FROM json_each(?) AS j JOIN signals AS s ON s.id = j.value",
            (_json_list(sids),),
        )
    }
    missing = [sid for sid in sids if sid not in found]
    if missing:
        raise InputError(f"no signal {missing[0]!r}", hint="see `rarenet signals list`")


def _comment_text(text: str | None) -> str:
    body = (text or "").strip()
    if not body:
        raise InputError("a comment needs some text", where="comment")
    if len(body) > MAX_COMMENT:
        raise InputError(f"at most {MAX_COMMENT} characters", where="comment")
    return body


def _json_list(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()
