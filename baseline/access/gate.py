"""Who is asking: the credential checks every route of `rarenet serve` makes.

Machine routes (ingest, snapshot, shard, metrics) take their own secret only
(credentials.py). Person routes (the console, GET /v1/signals) take a signed-in session,
a personal API token, or a trusted proxy's user header; on a loopback server with no
secret and no user yet, an anonymous read-only visitor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from rarenet.baseline.access.credentials import Credentials, Purpose
from rarenet.baseline.access.roles import Principal
from rarenet.baseline.access.users import count_users, get_user, user_for_token
from rarenet.baseline.console.session import COOKIE, Session, Sessions
from rarenet.baseline.store import Store
from rarenet.baseline.tokens import presented_token

OPEN_CACHE_SECONDS = 2.0
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identified:
    """The outcome for a person route: who (or None), their session, whether that
    session is new (set its cookie), and a refusal (status, message) when a credential
    was presented that cannot open person routes."""

    who: Principal | None = None
    session: Session | None = None
    fresh: bool = False
    refused: tuple[int, str] | None = None


def peer_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Gatekeeper:
    """Checks requests against the configured secrets, users and sessions."""

    def __init__(
        self, credentials: Credentials, open_store: Callable[[], Store], sessions: Sessions
    ) -> None:
        self.credentials = credentials
        self.open_store = open_store
        self.sessions = sessions
        self._open: tuple[float, bool] = (0.0, False)
        self._lock = threading.Lock()

    # -- machine routes ------------------------------------------------------------------

    def machine_ok(self, request: Request, purpose: Purpose) -> bool:
        """True when the request carries a secret of `purpose` (or the server has no
        secret at all: loopback-only development)."""
        if not self.credentials.any_secret:
            return True
        token = presented_token(
            request.headers.get("authorization"), request.query_params.get("token")
        )
        return self.credentials.accepts(purpose, token)

    # -- person routes -------------------------------------------------------------------

    def open_mode(self) -> bool:
        """No secret configured and no user yet: anonymous visitors may read."""
        if self.credentials.any_secret:
            return False
        now = time.monotonic()
        with self._lock:
            checked_at, value = self._open
            if now - checked_at < OPEN_CACHE_SECONDS:
                return value
        with self.open_store() as store:
            value = count_users(store) == 0
        with self._lock:
            self._open = (now, value)
        return value

    def forget_open_mode(self) -> None:
        with self._lock:
            self._open = (0.0, False)

    def identify(self, request: Request) -> Identified:
        """Who is asking on a person route (blocking: call off the event loop)."""
        peer = peer_of(request)
        token = presented_token(
            request.headers.get("authorization"), request.query_params.get("token")
        )
        if token is not None:
            with self.open_store() as store:
                user = user_for_token(store, token)
            if user is None:
                return Identified(
                    refused=(401, "this credential cannot open this page or API: use a "
                             "personal API token (rarenet tokens add) or sign in")
                )  # fmt: skip
            return Identified(Principal(user.name, user.role, "token", peer))
        session = self.sessions.get(request.cookies.get(COOKIE))
        proxied = self._proxy_user(request, peer)
        if proxied is not None:
            return self._proxy_session(proxied, session, peer)
        if session is not None and session.who is not None:
            who = self._current(session.who, peer)
            if who is not None:
                return Identified(who, session)
            self.sessions.end(session.id)
        if self.open_mode():
            anonymous = Principal(ANONYMOUS, "viewer", "open", peer)
            return Identified(anonymous, self.sessions.create(who=anonymous), fresh=True)
        return Identified()

    def _current(self, who: Principal, peer: str) -> Principal | None:
        """A session's principal with its role as stored now (None: the user is gone)."""
        if who.via == "open":
            return who if self.open_mode() else None
        with self.open_store() as store:
            user = get_user(store, who.name)
        if user is None:
            if who.via == "proxy" and self.credentials.proxy_role != "none":
                return Principal(who.name, self.credentials.proxy_role, "proxy", peer)
            return None
        return Principal(user.name, user.role, who.via, peer)

    def _proxy_user(self, request: Request, peer: str) -> str | None:
        if not self.credentials.trusts_proxy(peer):
            return None
        name = request.headers.get(self.credentials.user_header, "").strip()
        return name[:200] or None

    def _proxy_session(self, name: str, session: Session | None, peer: str) -> Identified:
        if session is not None and session.who is not None and session.who.name == name:
            who = self._current(session.who, peer)
            if who is not None:
                return Identified(who, session)
        who = self._current(Principal(name, "viewer", "proxy", peer), peer)
        if who is None:
            return Identified(
                refused=(403, f"{name!r} has no rarenet account and [server] proxy_role is none")
            )
        return Identified(who, self.sessions.create(who=who), fresh=True)
