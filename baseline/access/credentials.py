"""Scoped secrets: each configured credential opens one purpose only.

| purpose | setting | opens |
|---|---|---|
| ingest | `[ingest] tokens` | POST /v1/ingest |
| snapshot | `[server] snapshot_tokens` (none: the ingest tokens, for older configs) | GET /v1/snapshot |
| shard | `[detect] shard_token` | POST /v1/shard (on a `role = "shard"` server) |
| metrics | `[server] metrics_tokens` | GET /metrics |

People use the console and the read/write API as themselves (session or personal API
token, baseline/access/users.py). A server with no secret and no user at all is the
loopback-only development mode: the API is open there, the console read-only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from rarenet.baseline.config import Config, check_tokens
from rarenet.baseline.errors import ConfigError
from rarenet.baseline.tokens import token_ok


class Purpose(StrEnum):
    INGEST = "ingest"
    SNAPSHOT = "snapshot"
    SHARD = "shard"
    METRICS = "metrics"


@dataclass(frozen=True)
class Credentials:
    """The configured secrets by purpose, and the trusted proxy."""

    ingest: tuple[str, ...] = ()
    snapshot: tuple[str, ...] = ()
    shard: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    snapshot_from_ingest: bool = False  # older configs: hosts carry the ingest token
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    user_header: str = ""
    proxy_role: str = "viewer"

    @classmethod
    def from_config(cls, config: Config) -> Credentials:
        """The server's secrets; ConfigError names a short secret or a bad proxy setting."""
        ingest = _clean(config.ingest.tokens, "[ingest] tokens")
        snapshot = _clean(config.server.snapshot_tokens, "[server] snapshot_tokens")
        shard = _clean([config.detect.shard_token] if config.detect.shard_token else [],
                       "[detect] shard_token")  # fmt: skip
        metrics = _clean(config.server.metrics_tokens, "[server] metrics_tokens")
        proxies = []
        for raw in config.server.trusted_proxies:
            try:
                proxies.append(ipaddress.ip_network(raw.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"{raw!r} is not an address or network", where="[server] trusted_proxies"
                ) from None
        header = config.server.user_header.strip()
        if proxies and not header:
            raise ConfigError(
                "trusted_proxies is set but user_header is empty",
                where="[server] user_header",
                hint="name the header the proxy sets, e.g. X-Forwarded-User",
            )
        return cls(
            ingest=ingest,
            snapshot=snapshot or ingest,
            shard=shard,
            metrics=metrics,
            snapshot_from_ingest=not snapshot and bool(ingest),
            proxies=tuple(proxies),
            user_header=header.lower() if proxies else "",
            proxy_role=config.server.proxy_role,
        )

    @property
    def any_secret(self) -> bool:
        """True when any credential is configured (the server is no longer open)."""
        return bool(self.ingest or self.snapshot or self.shard or self.metrics or self.proxies)

    def secrets(self) -> list[str]:
        """Every secret, for redaction from logs."""
        return sorted({*self.ingest, *self.snapshot, *self.shard, *self.metrics})

    def accepts(self, purpose: Purpose, presented: str | None) -> bool:
        """True when `presented` is a secret of `purpose` (constant time per secret)."""
        allowed = getattr(self, purpose.value)
        return bool(allowed) and token_ok(allowed, presented)

    def trusts_proxy(self, address: str | None) -> bool:
        if not self.proxies or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)


def _clean(tokens: list[str], where: str) -> tuple[str, ...]:
    cleaned = [token.strip() for token in tokens]
    check_tokens(cleaned, where)
    return tuple(cleaned)
