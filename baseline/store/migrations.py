"""Schema steps, applied in order, each once, each in its own transaction.

A step is recorded in `_migrations` inside the same transaction that applies it, so an
interrupted upgrade leaves the store at the previous step, never half-way. Never edit a
released step: add a new one. The schema is documented in docs/schema.md.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from sqlite_utils import Database

from rarenet.baseline.detect.schedule import decode, encode
from rarenet.baseline.shells import SHELL_NAMES, UNSET_REMOTES, sql_list

Migration = tuple[str, Callable[[Database], None]]


def _initial(db: Database) -> None:
    """Observations, quarantine and file checkpoints (the ingest side)."""
    # AUTOINCREMENT: ids are never reused after deletes (retention), so "id > watermark"
    # finds exactly the rows not yet folded into presence.
    db.execute(
        """CREATE TABLE observations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time INTEGER NOT NULL,
            host TEXT NOT NULL,
            host_uuid TEXT,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            pid INTEGER,
            uid INTEGER,
            username TEXT,
            cmdline TEXT,
            cwd TEXT,
            parent_pid INTEGER,
            parent_name TEXT,
            family INTEGER,
            protocol INTEGER,
            local_address TEXT,
            local_port INTEGER,
            remote_address TEXT,
            remote_port INTEGER,
            state TEXT,
            direction TEXT,
            query TEXT,
            digest INTEGER NOT NULL
        )"""
    )
    # Idempotency key. Data time leads, so inserts of a time-ordered log append at the
    # end of the index and time-range scans (look-back, retention) use it too.
    db.execute("CREATE UNIQUE INDEX observations_identity ON observations (time, digest)")
    db.table("quarantine").create(
        {
            "id": int,
            "received_at": int,
            "source": str,
            "line": int,
            "reason": str,
            "raw": bytes,
            "raw_size": int,
            "raw_digest": bytes,
        },
        pk="id",
        not_null={"source", "reason"},
    )
    db.execute("CREATE UNIQUE INDEX quarantine_identity ON quarantine (source, line, raw_digest)")
    db.execute(
        """CREATE TABLE checkpoints (
            device INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            path TEXT NOT NULL,
            fingerprint BLOB NOT NULL,
            tail BLOB NOT NULL DEFAULT x'',
            offset INTEGER NOT NULL,
            line INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (device, inode)
        )"""
    )
    db.execute("CREATE INDEX checkpoints_path ON checkpoints (path)")


def _detection(db: Database) -> None:
    """Presence baselines, detection runs, the signal outbox and exceptions."""
    db.execute(
        """CREATE TABLE presence (
            span INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            host TEXT NOT NULL,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            connections INTEGER NOT NULL,
            first_time INTEGER NOT NULL,
            last_time INTEGER NOT NULL,
            first_id INTEGER NOT NULL,
            PRIMARY KEY (span, bucket, host, name, path)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX presence_name ON presence (span, name, bucket)")
    db.execute("CREATE INDEX presence_path ON presence (span, path, bucket)")
    db.execute("CREATE INDEX presence_host_path ON presence (span, host, path, bucket)")
    # Incremental aggregates of presence, so a run never rescans history:
    # hosts per (key, bucket), hosts per bucket, and which hosts were active when.
    db.execute(
        """CREATE TABLE key_bucket (
            span INTEGER NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            hosts INTEGER NOT NULL,
            PRIMARY KEY (span, kind, key, bucket)
        ) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE fleet_bucket (
            span INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            hosts INTEGER NOT NULL,
            PRIMARY KEY (span, bucket)
        ) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE host_bucket (
            span INTEGER NOT NULL,
            host TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            PRIMARY KEY (span, host, bucket)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE TABLE store_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    db.table("runs").create(
        {
            "id": int,
            "rule": str,
            "started_at": float,
            "data_time": int,
            "window_start": int,
            "window_end": int,
            "observations": int,
            "candidates": int,
            "signals": int,
            "truncated": int,
            "suppressed": int,
            "excepted": int,
            "duration": float,
            "status": str,
            "error": str,
        },
        pk="id",
    )
    db.execute("CREATE INDEX runs_data_time ON runs (data_time)")
    db.table("signals").create(
        {
            "id": str,
            "rule": str,
            "host": str,
            "name": str,
            "path": str,
            "bucket": int,
            "run_id": int,
            "created_at": float,
            "score": float,
            "initial_score": float,
            "document": str,
            "suppressed_count": int,
        },
        pk="id",
        not_null={"rule", "host", "name", "path", "bucket", "score", "initial_score"},
    )
    db.execute("CREATE INDEX signals_bucket ON signals (bucket)")
    db.execute(
        """CREATE TABLE deliveries (
            signal_id TEXT NOT NULL REFERENCES signals (id),
            webhook TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_status INTEGER,
            last_error TEXT,
            delivered_at REAL,
            PRIMARY KEY (signal_id, webhook)
        )"""
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at)")
    db.table("exceptions").create(
        {
            "id": int,
            "name": str,
            "path_glob": str,
            "host": str,
            "user": str,
            "cidr": str,
            "port": int,
            "expires_at": int,
            "reason": str,
            "created_at": int,
            "matched": int,
        },
        pk="id",
        defaults={"matched": 0},
    )


def _delivery_attempts(db: Database) -> None:
    """Delivery bookkeeping: when a row was (re)queued and first/last attempted, and the
    indexes delivery polls (due rows per webhook; signals by creation time)."""
    db.execute("ALTER TABLE deliveries ADD COLUMN queued_at REAL NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE deliveries ADD COLUMN first_attempt_at REAL")
    db.execute("ALTER TABLE deliveries ADD COLUMN last_attempt_at REAL")
    db.execute(
        "UPDATE deliveries SET queued_at = coalesce((SELECT created_at FROM signals "
        "WHERE signals.id = deliveries.signal_id), 0)"
    )
    db.execute(
        "CREATE INDEX deliveries_webhook_due ON deliveries (webhook, state, next_attempt_at)"
    )
    db.execute("CREATE INDEX signals_created_at ON signals (created_at)")


def _window_counts(db: Database) -> None:
    """Counts over any window in a few index seeks, whatever the fleet size:

    * `host_bucket.seq` — the host's active buckets up to and including this one, so a
      host's activity in a window is a difference of two seqs;
    * `key_host` — which hosts ever used a path / name (first and last bucket), so the
      distinct hosts of a key in a window are found host by host (one seek each, stopping
      at a cap) instead of by scanning every presence row of the key;
    * `name_path` — which paths each name was seen with, so a seek by name is a seek
      per path on the (host, path) index (a second host-major index on presence would
      cost every fold a third of its time); the per-key bucket indexes go (the per-key
      counts come from `key_bucket` and `key_host`).
    """
    db.execute("ALTER TABLE host_bucket ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE host_bucket SET seq = numbered.n FROM (SELECT span, host, bucket, "
        "row_number() OVER (PARTITION BY span, host ORDER BY bucket) AS n FROM host_bucket) "
        "AS numbered WHERE host_bucket.span = numbered.span AND host_bucket.host = numbered.host "
        "AND host_bucket.bucket = numbered.bucket"
    )
    db.execute(
        """CREATE TABLE key_host (
            span INTEGER NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            host TEXT NOT NULL,
            first_bucket INTEGER NOT NULL,
            last_bucket INTEGER NOT NULL,
            PRIMARY KEY (span, kind, key, host)
        ) WITHOUT ROWID"""
    )
    db.execute(
        "INSERT INTO key_host SELECT span, 'path', path, host, min(bucket), max(bucket) "
        "FROM presence WHERE path != '' GROUP BY span, path, host"
    )
    db.execute(
        "INSERT INTO key_host SELECT span, 'name', name, host, min(bucket), max(bucket) "
        "FROM presence GROUP BY span, name, host"
    )
    db.execute(
        """CREATE TABLE name_path (
            span INTEGER NOT NULL,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            PRIMARY KEY (span, name, path)
        ) WITHOUT ROWID"""
    )
    db.execute("INSERT INTO name_path SELECT DISTINCT span, name, path FROM presence")
    db.execute("DROP INDEX presence_name")
    db.execute("DROP INDEX presence_path")


def _signal_groups(db: Database) -> None:
    """Signal groups: one executable signalled on several hosts shares a group id (the
    first signal's); grouping looks signals up by executable and bucket."""
    db.execute("ALTER TABLE signals ADD COLUMN group_id TEXT")
    db.execute("UPDATE signals SET group_id = id")
    db.execute("CREATE INDEX signals_executable ON signals (path, name, bucket)")
    db.execute("CREATE INDEX signals_group ON signals (group_id)")


def _ancestors(db: Database) -> None:
    """The socket holder's process chain (ingest.ancestry): up to three ancestors."""
    db.execute("ALTER TABLE observations ADD COLUMN ancestors TEXT NOT NULL DEFAULT ''")


def _quarantine_overflow(db: Database) -> None:
    """Rejected lines counted but not kept (a source over its quarantine cap)."""
    db.execute(
        """CREATE TABLE quarantine_overflow (
            source TEXT PRIMARY KEY,
            dropped INTEGER NOT NULL,
            last_at INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX quarantine_received ON quarantine (received_at)")


def _shell_destinations(db: Database) -> None:
    """Remote addresses shells held sockets to (presence.py, docs/scoring.md "d"): the
    first connection of each (host, shell, bucket), with the first and last bucket."""
    db.execute(
        """CREATE TABLE shell_destination (
            span INTEGER NOT NULL,
            name TEXT NOT NULL,
            remote TEXT NOT NULL,
            first_bucket INTEGER NOT NULL,
            last_bucket INTEGER NOT NULL,
            PRIMARY KEY (span, name, remote)
        ) WITHOUT ROWID"""
    )
    db.execute(
        "INSERT INTO shell_destination SELECT p.span, p.name, o.remote_address, min(p.bucket), "
        "max(p.bucket) FROM presence AS p JOIN observations AS o ON o.id = p.first_id "
        f"WHERE p.name IN ({sql_list(SHELL_NAMES)}) "
        f"AND o.remote_address NOT IN ({sql_list(UNSET_REMOTES)}) "
        "GROUP BY p.span, p.name, o.remote_address"
    )


def _signal_acks(db: Database) -> None:
    """Signals a person acknowledged in the console (one row each; delivery is unaffected)."""
    db.execute(
        """CREATE TABLE signal_acks (
            signal_id TEXT PRIMARY KEY REFERENCES signals (id),
            acknowledged_at REAL NOT NULL
        ) WITHOUT ROWID"""
    )


def _access(db: Database) -> None:
    """Named console users, their personal API tokens, the audit trail, and who added
    each exception (docs/operations.md#users-roles-and-credentials)."""
    db.execute(
        """CREATE TABLE users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            password_hash TEXT,
            created_at REAL NOT NULL,
            created_by TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            label TEXT NOT NULL,
            digest TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            created_by TEXT NOT NULL,
            expires_at REAL,
            last_used_at REAL,
            revoked_at REAL
        )"""
    )
    db.execute(
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            via TEXT NOT NULL,
            address TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX audit_target ON audit (target, id)")
    db.execute("ALTER TABLE exceptions ADD COLUMN created_by TEXT")
    db.execute("ALTER TABLE exceptions ADD COLUMN broad INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE signal_acks ADD COLUMN acknowledged_by TEXT")


def _suspects(db: Database) -> None:
    """A verdict on acknowledgements (benign releases the binary on its host, attack or
    none keeps it a suspect), and each signal's kind and whether it makes its binary a
    suspect as columns, so the rule finds its suspects without reading documents
    (docs/scoring.md "Returning attackers")."""
    db.execute("ALTER TABLE signal_acks ADD COLUMN verdict TEXT")
    db.execute("ALTER TABLE signals ADD COLUMN kind TEXT NOT NULL DEFAULT 'host'")
    db.execute("ALTER TABLE signals ADD COLUMN suspect INTEGER NOT NULL DEFAULT 1")
    db.execute(
        "UPDATE signals SET kind = 'rollout', suspect = 0 "
        "WHERE json_extract(document, '$.kind') = 'rollout'"
    )
    db.execute("CREATE INDEX signals_host_binary ON signals (host, path, name, bucket)")


def _late_data(db: Database) -> None:
    """Late data (docs/scoring.md "Late data"): host-buckets that received data and wait
    to be scored (`pending_host_bucket`, filled by the presence fold, emptied by the runs
    that score them), those that arrived older than `history` and were never scored
    (`too_late`, per host), each host's newest bucket with data (`host_last`: silent
    hosts), and per run how many late host-buckets it scored, how many
    still wait after it, and the arrival lags of the host-buckets it scored first
    (`arrivals`: JSON [[seconds after the bucket ended, host-buckets], ...])."""
    db.execute(
        """CREATE TABLE pending_host_bucket (
            span INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            host TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (span, bucket, host)
        ) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE too_late (
            span INTEGER NOT NULL,
            host TEXT NOT NULL,
            host_buckets INTEGER NOT NULL,
            newest_bucket INTEGER NOT NULL,
            last_run_at INTEGER NOT NULL,
            PRIMARY KEY (span, host)
        ) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE host_last (
            span INTEGER NOT NULL,
            host TEXT NOT NULL,
            last_bucket INTEGER NOT NULL,
            PRIMARY KEY (span, host)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX host_last_bucket ON host_last (span, last_bucket)")
    db.execute(
        "INSERT INTO host_last (span, host, last_bucket) "
        "SELECT span, host, max(bucket) FROM host_bucket GROUP BY span, host"
    )
    db.execute("ALTER TABLE runs ADD COLUMN late INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE runs ADD COLUMN behind INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE runs ADD COLUMN behind_since INTEGER")
    db.execute("ALTER TABLE runs ADD COLUMN catch_up INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE runs ADD COLUMN arrivals TEXT NOT NULL DEFAULT '[]'")


def _signal_scale(db: Database) -> None:
    """A million signals (issue 30): the console's default list reads one row per group
    (`signal_group`: signals, latest, highest score; `signal_group_host`: its hosts), its
    host and binary filters match the few distinct hosts and binaries (`signal_host`,
    `signal_binary`) and then read their signals by index — all kept by triggers
    whatever writes `signals`; and the rule's "latest signal of this executable within
    a window" is a range on (path, bucket)."""
    db.execute("CREATE INDEX signals_path_bucket ON signals (path, bucket)")
    db.execute(
        """CREATE TABLE signal_group (
            group_id TEXT PRIMARY KEY,
            signals INTEGER NOT NULL,
            latest REAL NOT NULL,
            max_score REAL NOT NULL
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX signal_group_latest ON signal_group (latest, group_id)")
    db.execute(
        """CREATE TABLE signal_group_host (
            group_id TEXT NOT NULL,
            host TEXT NOT NULL,
            PRIMARY KEY (group_id, host)
        ) WITHOUT ROWID"""
    )
    db.execute(
        "INSERT INTO signal_group (group_id, signals, latest, max_score) "
        "SELECT coalesce(group_id, id), count(*), max(created_at), max(score) FROM signals "
        "GROUP BY 1"
    )
    db.execute(
        "INSERT INTO signal_group_host (group_id, host) "
        "SELECT DISTINCT coalesce(group_id, id), host FROM signals"
    )
    db.execute(
        "CREATE TABLE signal_host (host TEXT PRIMARY KEY, signals INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        """CREATE TABLE signal_binary (
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            signals INTEGER NOT NULL,
            PRIMARY KEY (path, name)
        ) WITHOUT ROWID"""
    )
    db.execute("INSERT INTO signal_host SELECT host, count(*) FROM signals GROUP BY host")
    db.execute(
        "INSERT INTO signal_binary SELECT path, name, count(*) FROM signals GROUP BY path, name"
    )
    db.execute(
        """CREATE TRIGGER signal_keys_added AFTER INSERT ON signals BEGIN
            INSERT INTO signal_host (host, signals) VALUES (new.host, 1)
            ON CONFLICT (host) DO UPDATE SET signals = signals + 1;
            INSERT INTO signal_binary (path, name, signals) VALUES (new.path, new.name, 1)
            ON CONFLICT (path, name) DO UPDATE SET signals = signals + 1;
        END"""
    )
    db.execute(
        """CREATE TRIGGER signal_keys_removed AFTER DELETE ON signals BEGIN
            UPDATE signal_host SET signals = signals - 1 WHERE host = old.host;
            DELETE FROM signal_host WHERE host = old.host AND signals <= 0;
            UPDATE signal_binary SET signals = signals - 1
            WHERE path = old.path AND name = old.name;
            DELETE FROM signal_binary WHERE path = old.path AND name = old.name AND signals <= 0;
        END"""
    )
    db.execute(
        """CREATE TRIGGER signal_group_added AFTER INSERT ON signals BEGIN
            INSERT INTO signal_group (group_id, signals, latest, max_score)
            VALUES (coalesce(new.group_id, new.id), 1, new.created_at, new.score)
            ON CONFLICT (group_id) DO UPDATE SET signals = signals + 1,
                latest = max(latest, excluded.latest),
                max_score = max(max_score, excluded.max_score);
            INSERT OR IGNORE INTO signal_group_host (group_id, host)
            VALUES (coalesce(new.group_id, new.id), new.host);
        END"""
    )
    db.execute(
        """CREATE TRIGGER signal_group_removed AFTER DELETE ON signals BEGIN
            UPDATE signal_group SET signals = signals - 1,
                latest = coalesce((SELECT max(created_at) FROM signals
                    WHERE group_id = coalesce(old.group_id, old.id) OR id = old.group_id), latest),
                max_score = coalesce((SELECT max(score) FROM signals
                    WHERE group_id = coalesce(old.group_id, old.id) OR id = old.group_id), max_score)
            WHERE group_id = coalesce(old.group_id, old.id);
            DELETE FROM signal_group
            WHERE group_id = coalesce(old.group_id, old.id) AND signals <= 0;
            DELETE FROM signal_group_host
            WHERE group_id = coalesce(old.group_id, old.id) AND host = old.host
              AND NOT EXISTS (SELECT 1 FROM signals
                  WHERE (group_id = coalesce(old.group_id, old.id) OR id = old.group_id)
                    AND host = old.host);
        END"""
    )
    db.execute(
        """CREATE TRIGGER signal_group_changed AFTER UPDATE OF score, created_at ON signals
        BEGIN
            UPDATE signal_group SET latest = max(latest, new.created_at),
                max_score = max(max_score, new.score)
            WHERE group_id = coalesce(new.group_id, new.id);
        END"""
    )


def _signal_score(db: Database) -> None:
    """The console's score filter at a million signals (issue 30): how many signals
    reach a score is a count over this index, and the groups come from `signal_group`'s
    highest score (baseline/console/views.py)."""
    db.execute("CREATE INDEX signals_score ON signals (score)")


def _peers(db: Database) -> None:
    """A host's paths within a window, for peers (baseline/detect/peers.py): one index
    seek per host instead of a walk over every key."""
    db.execute(
        "CREATE INDEX key_host_by_host ON key_host (span, host, kind, last_bucket, first_bucket)"
    )


def _usage_memory(db: Database) -> None:
    """The long memory (baseline/detect/memory.py): per (host, name, path), the first
    bucket of each of the latest days it used the network, beyond `history`; filled
    from the presence still kept."""
    db.execute(
        """CREATE TABLE usage_memory (
            span INTEGER NOT NULL,
            host TEXT NOT NULL,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            last_time INTEGER NOT NULL,
            days TEXT NOT NULL,
            PRIMARY KEY (span, host, name, path)
        ) WITHOUT ROWID"""
    )
    rows = db.execute(
        "SELECT span, host, name, path, min(bucket) FROM presence "
        "GROUP BY span, host, name, path, bucket / 86400 ORDER BY span, host, name, path"
    ).fetchall()
    days: dict[tuple[int, str, str, str], list[int]] = {}
    for span, host, name, path, first in rows:
        days.setdefault((span, host, name, path), []).append(int(first))
    encoded = {key: encode(times) for key, times in days.items()}
    db.conn.executemany(
        "INSERT INTO usage_memory VALUES (?, ?, ?, ?, ?, ?)",
        [(*key, decode(text)[-1], text) for key, text in encoded.items()],
    )


def _destinations(db: Database) -> None:
    """Where the fleet already talks (baseline/detect/destinations.py): per outbound
    address and port, every host that connected there, with first and last bucket;
    filled from the observations still kept."""
    db.execute(
        """CREATE TABLE destination_host (
            span INTEGER NOT NULL,
            remote TEXT NOT NULL,
            port INTEGER NOT NULL,
            host TEXT NOT NULL,
            first_bucket INTEGER NOT NULL,
            last_bucket INTEGER NOT NULL,
            PRIMARY KEY (span, remote, port, host)
        ) WITHOUT ROWID"""
    )
    for (span,) in db.execute("SELECT DISTINCT span FROM presence").fetchall():
        db.execute(
            "INSERT INTO destination_host SELECT ?, remote_address, remote_port, host, "
            "min(time / ?) * ?, max(time / ?) * ? FROM observations "
            "WHERE direction = 'outbound' AND remote_address IS NOT NULL "
            f"AND remote_address NOT IN ({sql_list(UNSET_REMOTES)}) "
            "GROUP BY remote_address, remote_port, host",
            (span, span, span, span, span),
        )


def _binary_users(db: Database) -> None:
    """Which users ran each binary with the network on each host (baseline/detect/
    binary_users.py); filled from the observations still kept."""
    db.execute(
        """CREATE TABLE binary_user (
            span INTEGER NOT NULL,
            host TEXT NOT NULL,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            user TEXT NOT NULL,
            first_bucket INTEGER NOT NULL,
            last_bucket INTEGER NOT NULL,
            PRIMARY KEY (span, host, name, path, user)
        ) WITHOUT ROWID"""
    )
    for (span,) in db.execute("SELECT DISTINCT span FROM presence").fetchall():
        db.execute(
            "INSERT INTO binary_user SELECT ?, host, name, path, coalesce(username, ''), "
            "min(time / ?) * ?, max(time / ?) * ? FROM observations "
            "GROUP BY host, name, path, coalesce(username, '')",
            (span, span, span, span, span),
        )


def _triage(db: Database) -> None:
    """Triage (docs/operations.md "Triage"): each signal's state — open, acknowledged,
    in progress, closed as a true or a false positive — with its assignee (a row only
    once someone acted; none: open), and the analysts' comments. Signals acknowledged
    before are acknowledged, or closed where their verdict said benign (false positive)
    or attack (true positive)."""
    db.execute(
        """CREATE TABLE signal_triage (
            signal_id TEXT PRIMARY KEY REFERENCES signals (id),
            state TEXT NOT NULL,
            resolution TEXT,
            assignee TEXT,
            updated_at REAL NOT NULL,
            updated_by TEXT
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX signal_triage_state ON signal_triage (state, assignee)")
    db.execute(
        """CREATE TABLE signal_comments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            signal_id TEXT NOT NULL REFERENCES signals (id),
            at REAL NOT NULL,
            author TEXT NOT NULL,
            text TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX signal_comments_signal ON signal_comments (signal_id, id)")
    db.execute(
        "INSERT INTO signal_triage (signal_id, state, resolution, updated_at, updated_by) "
        "SELECT signal_id, CASE WHEN verdict IS NULL THEN 'acknowledged' ELSE 'closed' END, "
        "CASE verdict WHEN 'benign' THEN 'false_positive' WHEN 'attack' THEN 'true_positive' "
        "END, acknowledged_at, acknowledged_by FROM signal_acks"
    )


MIGRATIONS: list[Migration] = [
    ("0001_initial", _initial),
    ("0002_detection", _detection),
    ("0003_delivery_attempts", _delivery_attempts),
    ("0004_window_counts", _window_counts),
    ("0006_signal_groups", _signal_groups),
    ("0007_ancestors", _ancestors),
    ("0008_quarantine_overflow", _quarantine_overflow),
    ("0009_signal_acks", _signal_acks),
    ("0010_shell_destinations", _shell_destinations),
    ("0011_access", _access),
    ("0012_suspects", _suspects),
    ("0013_late_data", _late_data),
    ("0014_signal_scale", _signal_scale),
    ("0015_signal_score", _signal_score),
    ("0016_peers", _peers),
    ("0017_usage_memory", _usage_memory),
    ("0018_destinations", _destinations),
    ("0019_binary_users", _binary_users),
    ("0020_triage", _triage),
]


def applied(conn: sqlite3.Connection) -> list[str]:
    """Names of the steps already applied to this database, in order."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY name")]


def migrate(conn: sqlite3.Connection, upto: str | None = None) -> list[str]:
    """Apply every missing step (or those up to `upto`); return the names applied now."""
    done = set(applied(conn))
    db = Database(conn)
    newly: list[str] = []
    for name, step in MIGRATIONS:
        if name in done:
            if name == upto:
                break
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have just applied it.
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            step(db)
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        newly.append(name)
        if name == upto:
            break
    return newly
