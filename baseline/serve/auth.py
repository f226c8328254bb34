"""Bearer tokens, the loopback rule, and keeping tokens out of logs."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Sequence
from urllib.parse import quote, quote_plus, unquote_plus

from rarenet.baseline.errors import ConfigError
from rarenet.baseline.tokens import presented_token, token_ok

__all__ = [
    "RedactTokens",
    "check_bind",
    "is_loopback",
    "presented_token",
    "redact",
    "token_ok",
]

_QUERY = re.compile(r"\?([^\s\"]+)")  # a query string inside a log line
_QUERY_PARTS = re.compile(r"([&;])")  # `;` too: not a separator here, but some clients use it


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


def _is_token_key(raw_key: str) -> bool:
    """A query key that names the token however it is spelt or mangled: decoded, with
    everything but letters dropped, containing "token" (`%74oken`, `TOKEN`, `token%00`,
    `access_token`)."""
    letters = re.sub(r"[^a-z]", "", unquote_plus(raw_key).lower())
    return "token" in letters


def redact(text: str, tokens: Sequence[str] = ()) -> str:
    """`?token=secret` → `?token=REDACTED`, whatever the spelling of the key (`TOKEN`,
    `%74oken`, `token%00`, `token%3Dsecret`); a parameter whose decoded value holds a
    configured token; and every configured token, raw or URL-encoded, wherever it
    appears."""

    def query(match: re.Match[str]) -> str:
        parts = _QUERY_PARTS.split(match.group(1))
        for index in range(0, len(parts), 2):  # odd indexes are the separators
            key, equals, value = parts[index].partition("=")
            decoded = unquote_plus(parts[index])
            if _is_token_key(decoded.partition("=")[0]) or _is_token_key(key):
                parts[index] = "token=REDACTED"
            elif equals and any(t in unquote_plus(value) for t in tokens):
                parts[index] = f"{key}=REDACTED"
        return "?" + "".join(parts)

    text = _QUERY.sub(query, text)
    for token in tokens:
        for form in {token, quote(token, safe=""), quote_plus(token)}:
            text = text.replace(form, "REDACTED")
    return text


class RedactTokens(logging.Filter):
    """A logging filter: tokens never reach a log line (see `redact`)."""

    def __init__(self, tokens: Sequence[str] = ()) -> None:
        super().__init__()
        self.tokens = [token for token in tokens if token]

    def _clean(self, value: object) -> object:
        return redact(value, self.tokens) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, self.tokens)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._clean(v) for k, v in record.args.items()}
        return True
