"""Checking a presented API token (shared by the API and the console)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence


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
