"""Bearer tokens, the loopback rule, and keeping tokens out of logs."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import socket
from collections.abc import Sequence

from baseline.errors import ConfigError

_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s\"]*", re.IGNORECASE)


def token_ok(tokens: Sequence[str], presented: str | None) -> bool:
    """True if `presented` equals one of `tokens`. Every configured token is compared
    (constant time each), so timing tells nothing about which one or how much matched.
    With no tokens configured, everything is allowed (the server is loopback-only)."""
    if not tokens:
        return True
    if not presented:
        return False
    given = presented.encode("utf-8", "surrogateescape")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode("utf-8", "surrogateescape"))
    return matched


def presented_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token a request carries: `Authorization: Bearer T`, else `?token=T` (Fleet
    cannot set headers)."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def is_loopback(host: str) -> bool:
    """True if every address `host` names is a loopback address."""
    name = host.strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%", 1)[0]).is_loopback for address in addresses
    )


def check_bind(host: str, tokens: Sequence[str]) -> None:
    """Refuse to listen beyond loopback without tokens (DESIGN §8)."""
    if not tokens and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without tokens: anyone who can reach it could post data",
            where="[server] host",
            hint="set [ingest] tokens (or RARENET_INGEST_TOKENS), or bind 127.0.0.1",
        )


def redact(text: str) -> str:
    """`?token=secret` → `?token=REDACTED`."""
    return _TOKEN_IN_QUERY.sub(r"\1REDACTED", text)


class RedactTokens(logging.Filter):
    """A logging filter: tokens in query strings never reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True
