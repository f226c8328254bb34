"""Clearing the quarantine: rejected lines deleted on purpose, and said in the audit
trail (retention prunes them too, `[store] retention`)."""

from __future__ import annotations

from rarenet.baseline.access.audit import record
from rarenet.baseline.access.roles import Principal
from rarenet.baseline.store import Store


def clear_quarantine(store: Store, source: str | None, who: Principal) -> int:
    """Delete the quarantined lines of `source` (every source when None) and their
    overflow counts, recording who did it in the same transaction; how many lines."""
    where, params = ("WHERE source = ?", (source,)) if source is not None else ("", ())
    with store.transaction() as conn:
        removed = int(conn.execute(f"DELETE FROM quarantine {where}", params).rowcount)
        dropped = conn.execute(f"DELETE FROM quarantine_overflow {where}", params).rowcount
        record(
            conn,
            who,
            "quarantine.clear",
            f"quarantine:{source or '*'}",
            {"removed": removed, "overflow_sources": int(dropped)},
        )
    return removed
