"""Console sessions: a user signed in once becomes an HttpOnly, SameSite=Strict cookie;
every state-changing form carries the session's CSRF token. A session remembers who
(the Principal); its role is read again from the store on each request.

Sessions live in this process's memory (a restart signs everyone out) and expire after
SESSION_TTL; at most MAX_SESSIONS are kept (the oldest go first). The cookie holds a
random id only — never the API token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from rarenet.baseline.access.roles import Principal

COOKIE = "rarenet_session"
SESSION_TTL = 12 * 3600.0
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires_at: float
    who: Principal | None = None

    def csrf_ok(self, presented: str | None) -> bool:
        """True when `presented` is this session's CSRF token (constant-time)."""
        return bool(presented) and hmac.compare_digest(
            self.csrf.encode(), str(presented).encode("utf-8", "surrogatepass")
        )


class Sessions:
    """The signed-in browsers of this server."""

    def __init__(self, ttl: float = SESSION_TTL, limit: int = MAX_SESSIONS) -> None:
        self.ttl = ttl
        self.limit = limit
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, now: float | None = None, who: Principal | None = None) -> Session:
        """A new session for `who` (its id goes into the cookie)."""
        now = time.time() if now is None else now
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self.ttl, who)
        with self._lock:
            self._by_id[session.id] = session
            while len(self._by_id) > self.limit:
                self._by_id.popitem(last=False)
        return session

    def get(self, sid: str | None, now: float | None = None) -> Session | None:
        """The live session with this id, else None (expired ones are dropped)."""
        if not sid or len(sid) > 100:
            return None
        now = time.time() if now is None else now
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if session.expires_at <= now:
                del self._by_id[sid]
                return None
            return session

    def end(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_id.pop(sid, None)

    def end_user(self, name: str) -> None:
        """Sign a user out everywhere (removed, or their role changed)."""
        with self._lock:
            for sid in [k for k, s in self._by_id.items() if s.who and s.who.name == name]:
                del self._by_id[sid]
