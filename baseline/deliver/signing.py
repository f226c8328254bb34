"""`X-Rarenet-Signature: sha256=<hex HMAC-SHA256 of the exact body>` (docs/signals.md)."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Rarenet-Signature"


def sign(secret: str, body: bytes) -> str:
    """The header value for `body` under `secret`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())
