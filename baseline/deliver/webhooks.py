"""Configured webhooks as delivery targets: names, validated headers, redacted URLs.

A webhook's URL is a secret (Slack and Teams URLs carry tokens), so everything the outbox
stores or prints names a webhook by its `name`: the `[[webhooks]] name` setting, or by
default the URL's host plus the first 6 hex digits of the URL's SHA-256
(`hooks.slack.com-3fa9c2`). Changing the URL of an unnamed webhook therefore makes it a
new webhook; give it a `name` to keep its history across URL changes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from rarenet.baseline.config import Config, WebhookSettings
from rarenet.baseline.errors import ConfigError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
# Headers rarenet sets itself; configuring them would break signing or idempotency.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "idempotency-key",
        "x-rarenet-signature",
        "x-rarenet-attempt",
        "transfer-encoding",
        "connection",
    }
)
FORMATS = ("json", "slack", "ecs")


@dataclass(frozen=True)
class Webhook:
    """One delivery target (from a `[[webhooks]]` table)."""

    name: str
    url: str
    format: str
    secret: str
    timeout: float
    headers: tuple[tuple[str, str], ...]
    dead_letter_after: float
    max_backoff: float
    alert_after: float = 3600.0  # failing this long: a failing part of Health

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """`scheme://host[:port]/…`: enough to recognise a webhook, no path, query or user."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable url>"
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else "/"
    return f"{parts.scheme or '?'}://{host}{port}{rest}"


def default_name(url: str) -> str:
    """The URL's host + a short hash of the whole URL: stable, recognisable, not secret."""
    try:
        host = urlsplit(url).hostname or "webhook"
    except ValueError:
        host = "webhook"
    host = re.sub(r"[^A-Za-z0-9.-]", "-", host).strip(".-")[:48] or "webhook"
    return f"{host}-{hashlib.sha256(url.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


def parse_headers(lines: list[str], where: str) -> tuple[tuple[str, str], ...]:
    """`["Name: value", …]` → pairs; raises ConfigError naming the bad entry (not its value)."""
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _HEADER_NAME.match(name):
            raise ConfigError(
                f"header #{number} is not 'Name: value'",
                where=f"{where} headers",
                hint='e.g. headers = ["Authorization: Bearer …"]',
            )
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            raise ConfigError(
                f"header {name!r} has a control character in its value", where=f"{where} headers"
            )
        if name.lower() in RESERVED_HEADERS:
            raise ConfigError(f"header {name!r} is set by rarenet itself", where=f"{where} headers")
        pairs.append((name, value))
    return tuple(pairs)


def webhook_from_settings(settings: WebhookSettings, index: int = 0) -> Webhook:
    """Validate one `[[webhooks]]` table into a target."""
    where = f"[[webhooks]] #{index + 1}"
    try:
        parts = urlsplit(settings.url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f"url {redact_url(settings.url)} is not an http(s) URL", where=f"{where} url"
        )
    if settings.format not in FORMATS:
        raise ConfigError(f"unknown format {settings.format!r}", where=f"{where} format")
    name = settings.name or default_name(settings.url)
    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"webhook name {name!r} must be 1-64 letters, digits, '.', '_' or '-'",
            where=f"{where} name",
        )
    return Webhook(
        name=name,
        url=settings.url,
        format=settings.format,
        secret=settings.secret,
        timeout=float(settings.timeout),
        headers=parse_headers(list(settings.headers), where),
        dead_letter_after=float(settings.dead_letter_after),
        max_backoff=float(settings.max_backoff),
        alert_after=float(settings.alert_after),
    )


def configured_webhooks(config: Config) -> list[Webhook]:
    """Every `[[webhooks]]` table as a target; names must be unique."""
    hooks = [webhook_from_settings(s, i) for i, s in enumerate(config.webhooks)]
    seen: set[str] = set()
    for index, hook in enumerate(hooks):
        if hook.name in seen:
            raise ConfigError(
                f"two webhooks are named {hook.name!r}",
                where=f"[[webhooks]] #{index + 1} name",
                hint="give each webhook its own name",
            )
        seen.add(hook.name)
    return hooks
