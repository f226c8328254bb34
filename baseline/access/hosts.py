"""The Host-header check: a request must name this server (DNS rebinding defence).

Allowed: loopback names (`localhost`, `127.0.0.1`, `::1`), the bind address when it is
not a wildcard, and `[server] names` (globs such as `*.example.com`). Any port.
Others get 421 Misdirected Request before any route runs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

_HOST_CHARACTERS = re.compile(r"^[a-z0-9.:-]{1,253}$")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::", "*")


def allowed_names(bind_host: str, names: Iterable[str]) -> tuple[str, ...]:
    """The names a request's Host may carry, lower-case, without brackets or ports."""
    found = [*LOOPBACK_NAMES]
    if bind_host.strip("[]") not in WILDCARD_BINDS:
        found.append(bind_host.strip("[]").lower())
    found.extend(name.strip().lower() for name in names if name.strip())
    return tuple(dict.fromkeys(found))


def host_name(header: str) -> str:
    """`example.com:8089` → `example.com`; `[::1]:8089` → `::1`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def name_allowed(header: str | None, allowed: tuple[str, ...]) -> bool:
    """True when `header` names one of `allowed`: a DNS name or IP literal only (a glob
    must never stretch over other characters, e.g. `evil.com#.example.org`)."""
    if not header:
        return False
    name = host_name(header).rstrip(".")
    if not _HOST_CHARACTERS.match(name):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed)


class RequireHost:
    """ASGI middleware refusing requests whose Host is not one of `allowed`."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers", []):
            if key == b"host":
                header = value.decode("latin-1")
                break
        if name_allowed(header, self.allowed):
            await self.app(scope, receive, send)
            return
        shown = (header or "")[:100]
        body = orjson.dumps(
            {
                "error": f"Host {shown!r} is not a name of this server",
                "hint": "add it to [server] names",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
