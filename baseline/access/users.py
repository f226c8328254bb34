"""Named console users (argon2-hashed passwords) and their personal API tokens.

A personal token is shown once when made and stored only as its SHA-256 (it is random
and long, so a fast hash is enough); it acts with its user's role. Removing a user
revokes their tokens.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rarenet.baseline.access.audit import record
from rarenet.baseline.access.roles import ROLES, Principal
from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
TOKEN_PREFIX = "rnu_"
LAST_USED_EVERY = 60.0  # seconds between `last_used_at` writes for one token

_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash verified when the user is unknown (the same work as a known one); made on
    first use, not at import: argon2 costs ~0.1 s and 64 MiB, and most processes that
    import this module (every CLI command, every serve start) never sign anyone in."""
    return _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User:
    name: str
    role: str
    has_password: bool
    created_at: float
    created_by: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "password": self.has_password,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class ApiToken:
    id: int
    user: str
    label: str
    created_at: float
    created_by: str
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "label": self.label,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InputError(
            f"{name[:80]!r} is not a user name: 1 to 64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit",
            where="NAME",
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InputError(f"{role!r} is not a role (one of {', '.join(ROLES)})", where="--role")
    return role


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InputError(
            f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters", where="password"
        )
    return password


def _hash(password: str) -> str:
    return _HASHER.hash(check_password(password))


def add_user(store: Store, name: str, role: str, password: str | None, by: Principal) -> User:
    """A new user; no password means they sign in only through a trusted proxy (or
    with personal API tokens)."""
    check_name(name)
    check_role(role)
    hashed = _hash(password) if password is not None else None
    now = time.time()
    with store.transaction() as conn:
        try:
            conn.execute(
                "INSERT INTO users (name, role, password_hash, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, role, hashed, now, by.name),
            )
        except sqlite3.IntegrityError:
            raise InputError(f"user {name!r} already exists", where="NAME") from None
        record(conn, by, "user.add", f"user:{name}", {"role": role, "summary": f"role {role}"})
    return User(name, role, hashed is not None, now, by.name)


def set_password(store: Store, name: str, password: str, by: Principal) -> None:
    hashed = _hash(password)
    with store.transaction() as conn:
        if (
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (hashed, name)
            ).rowcount
            == 0
        ):
            raise InputError(f"no user {name!r}", where="NAME")
        record(conn, by, "user.password", f"user:{name}")


def set_role(store: Store, name: str, role: str, by: Principal) -> None:
    check_role(role)
    with store.transaction() as conn:
        if conn.execute("UPDATE users SET role = ? WHERE name = ?", (role, name)).rowcount == 0:
            raise InputError(f"no user {name!r}", where="NAME")
        record(conn, by, "user.role", f"user:{name}", {"role": role, "summary": f"role {role}"})


def remove_user(store: Store, name: str, by: Principal) -> bool:
    """Delete a user and revoke their tokens; False when there was none."""
    now = time.time()
    with store.transaction() as conn:
        conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL",
            (now, name),
        )
        removed = conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0
        if removed:
            record(conn, by, "user.remove", f"user:{name}")
    return removed


_SELECT_USERS = "SELECT name, role, password_hash IS NOT NULL, created_at, created_by FROM users"


def _user(row: tuple[Any, ...]) -> User:
    return User(str(row[0]), str(row[1]), bool(row[2]), float(row[3]), str(row[4]))


def list_users(store: Store) -> list[User]:
    rows = store.conn.execute(f"{_SELECT_USERS} ORDER BY name").fetchall()
    return [_user(row) for row in rows]


def count_users(store: Store) -> int:
    return int(store.conn.execute("SELECT count(*) FROM users").fetchone()[0])


def get_user(store: Store, name: str) -> User | None:
    row = store.conn.execute(f"{_SELECT_USERS} WHERE name = ?", (name,)).fetchone()
    return None if row is None else _user(row)


def verify_password(store: Store, name: str, password: str) -> User | None:
    """The user when `password` is theirs, else None. An unknown name costs the same
    hash as a known one, so timing does not tell which names exist."""
    row = store.conn.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
    stored = row[0] if row is not None and row[0] else _dummy_hash()
    try:
        _HASHER.verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if row is None or not row[0]:
        return None
    return get_user(store, name)


# -- personal API tokens ----------------------------------------------------------------


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def create_token(
    store: Store, user: str, label: str, expires_at: float | None, by: Principal
) -> tuple[ApiToken, str]:
    """A new token for `user`; returns it and its secret (shown once, never stored)."""
    if get_user(store, user) is None:
        raise InputError(f"no user {user!r}", where="--user")
    label = label.strip()[:100] or "api"
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO api_tokens (user, label, digest, created_at, created_by, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (user, label, _digest(secret), now, by.name, expires_at),
        )
        token_id = int(cursor.lastrowid or 0)
        record(conn, by, "token.add", f"token:{token_id}", {"user": user, "label": label})
    return ApiToken(token_id, user, label, now, by.name, expires_at, None, None), secret


def revoke_token(store: Store, token_id: int, by: Principal) -> bool:
    with store.transaction() as conn:
        revoked = (
            conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), token_id),
            ).rowcount
            > 0
        )
        if revoked:
            record(conn, by, "token.revoke", f"token:{token_id}")
    return revoked


def list_tokens(store: Store) -> list[ApiToken]:
    rows = store.conn.execute(
        "SELECT id, user, label, created_at, created_by, expires_at, last_used_at, revoked_at "
        "FROM api_tokens ORDER BY id"
    ).fetchall()
    return [ApiToken(*row) for row in rows]


def user_for_token(store: Store, secret: str, now: float | None = None) -> User | None:
    """The user a live personal token acts for, else None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    now = time.time() if now is None else now
    row = store.conn.execute(
        "SELECT t.id, t.user, t.expires_at, t.last_used_at FROM api_tokens AS t "
        "JOIN users AS u ON u.name = t.user WHERE t.digest = ? AND t.revoked_at IS NULL",
        (_digest(secret),),
    ).fetchone()
    if row is None or (row[2] is not None and row[2] <= now):
        return None
    if row[3] is None or now - row[3] > LAST_USED_EVERY:
        with store.transaction() as conn:
            conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, row[0]))
    return get_user(store, str(row[1]))
