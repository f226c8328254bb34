"""Sign-in rate limiting: after MAX_FAILURES failed sign-ins within WINDOW, that account
and that address are each locked for LOCKOUT seconds (a correct password is refused
too while locked). Kept in memory (a restart forgets it), bounded in size."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

MAX_FAILURES = 20
WINDOW = 900.0
LOCKOUT = 900.0
MAX_TRACKED = 10_000


class SigninLimiter:
    """Failures per account and per address; `locked_for` says how long a lock lasts."""

    def __init__(
        self, max_failures: int = MAX_FAILURES, window: float = WINDOW, lockout: float = LOCKOUT
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(account: str, address: str) -> tuple[str, str]:
        return f"account:{account.lower()[:100]}", f"address:{address}"

    def locked_for(self, account: str, address: str, now: float | None = None) -> float:
        """Seconds until this account or address may try again (0: not locked)."""
        now = time.time() if now is None else now
        with self._lock:
            until = max(self._locked_until.get(key, 0.0) for key in self._keys(account, address))
        return max(0.0, until - now)

    def failed(self, account: str, address: str, now: float | None = None) -> bool:
        """Count a failure; True when it locks the account or the address now."""
        now = time.time() if now is None else now
        locked_now = False
        with self._lock:
            for key in self._keys(account, address):
                times = self._failures.setdefault(key, deque())
                self._failures.move_to_end(key)
                times.append(now)
                while times and times[0] <= now - self.window:
                    times.popleft()
                if len(times) >= self.max_failures and self._locked_until.get(key, 0.0) <= now:
                    self._locked_until[key] = now + self.lockout
                    times.clear()
                    locked_now = True
            while len(self._failures) > MAX_TRACKED:
                old, _ = self._failures.popitem(last=False)
                self._locked_until.pop(old, None)
        return locked_now

    def succeeded(self, account: str, address: str) -> None:
        """A good sign-in clears the account's failures (not the address's)."""
        with self._lock:
            self._failures.pop(self._keys(account, address)[0], None)
