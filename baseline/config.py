"""Settings: declared once (default + help), read from rarenet.toml, env and CLI flags.

Precedence, lowest first: built-in default, `rarenet.toml`, `RARENET_<SECTION>_<KEY>`
environment variables, command-line flags. Every value is validated on load and a bad
one raises `ConfigError` naming the key and where it came from (`file:line` or the
environment variable).
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rarenet.baseline.errors import ConfigError
from rarenet.baseline.units import format_duration, parse_duration, parse_size

CONFIG_ENV = "RARENET_CONFIG"
DB_ENV = "RARENET_DB"
DEFAULT_CONFIG_NAME = "rarenet.toml"

# Processes excluded by default: osquery itself, Fleet's agent and the agents Elastic's
# job excludes. They talk to the network constantly and are monitored by other means.
DEFAULT_EXCLUDED_PROCESSES = (
    "osqueryd",
    "osqueryi",
    "orbit",
    "fleet-desktop",
    "rarenet-extension",
    "elastic-agent",
    "elastic-endpoint",
    "agentbeat",
    "auditbeat",
    "filebeat",
    "heartbeat",
    "metricbeat",
    "packetbeat",
)


def setting(
    default: Any,
    help: str,
    kind: str = "str",
    secret: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """Declare one setting: its default, help text, value kind and allowed range."""
    meta = {"help": help, "kind": kind, "secret": secret, "low": low, "high": high}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class StoreSettings:
    path: str = setting("./rarenet.db", "SQLite database file (WAL mode).", "path")
    retention: float = setting(30 * 86400.0, "How long raw observations are kept.", "duration")
    signal_retention: float = setting(
        365 * 86400.0,
        "How long signals are kept after they were raised, with their deliveries, "
        "acknowledgements and audit trail (0: forever).",
        "duration",
    )


@dataclass(frozen=True)
class IngestSettings:
    files: list[str] = setting(
        [], "Result-log files `rarenet serve` tails (globs allowed).", "list"
    )
    tokens: list[str] = setting(
        [],
        "Bearer tokens accepted by POST /v1/ingest, and nowhere else (they sit in Fleet's "
        "webhook URL: assume they leak).",
        "list",
        True,
    )
    max_body: int = setting(16 * 1024**2, "Largest request body or input line.", "size", low=1024)
    exclude_destinations: list[str] = setting(
        [],
        "Extra destination addresses/CIDRs to ignore (loopback and unspecified always are).",
        "list",
    )
    exclude_processes: list[str] = setting(
        list(DEFAULT_EXCLUDED_PROCESSES),
        "Process names (globs) whose sockets are ignored.",
        "list",
    )
    exclude_users: list[str] = setting([], "User names whose processes are ignored.", "list")


@dataclass(frozen=True)
class CollectSettings:
    interval: float = setting(60.0, "How often `rarenet collect` reads /proc.", "duration", low=1)
    host_id: str = setting(
        "", "Host name for collected rows (default: the hostname; /etc/machine-id is its host.id)."
    )


@dataclass(frozen=True)
class DetectSettings:
    bucket_span: float = setting(900.0, "Presence bucket length.", "duration", low=1)
    interval: float = setting(900.0, "How often the rule runs.", "duration", low=1)
    lookback: float = setting(2700.0, "How far back each run looks.", "duration", low=1)
    threshold: float = setting(
        50.0, "Lowest score that becomes a signal (0-100).", "float", low=0, high=100
    )
    max_signals: int = setting(
        100, "Most signals one run emits (highest scores first).", "int", low=1
    )
    history: float = setting(
        14 * 86400.0, "Baseline window before the look-back.", "duration", low=1
    )
    memory: float = setting(
        400 * 86400.0,
        "How long the days a binary used the network on a host are remembered (its "
        "schedule: weekly, monthly, quarterly), beyond `history`.",
        "duration",
        low=0,
    )
    warmup_buckets: int = setting(
        20, "Buckets of fleet history needed before any signal.", "int", low=0
    )
    suppress_for: float = setting(
        86400.0, "Quiet time per (host, executable) after a signal.", "duration"
    )
    catch_up: int = setting(
        20000,
        "Most host-buckets of late data (older than the look-back) one run scores; the "
        "rest waits for the next run.",
        "int",
        low=1,
    )
    role: str = setting(
        "node",
        "node: run the rule (on this store, or over `shards`); shard: only answer a "
        "detection node's POST /v1/shard, never run the rule on this store's share of hosts.",
        "choice:node,shard",
    )
    shards: list[str] = setting(
        [],
        "Host shards this node runs the one fleet-wide rule over (each a `rarenet serve` "
        "URL, http:// or https://); none: this node's own store.",
        "list:url",
    )
    shard_token: str = setting(
        "",
        "The shard secret: a detection node presents it, a shard accepts it on "
        "POST /v1/shard only (the same value on the node and every shard).",
        "str",
        True,
    )
    shard_timeout: float = setting(
        120.0,
        "Longest one shard question may take: a detection node gives up after it, and a "
        "shard stops the work (HTTP 503) rather than go on for a caller that left.",
        "duration",
        low=1,
    )
    exception_max_age: float = setting(
        90 * 86400.0,
        "Longest an exception may last, and its expiry when none is given (0: no cap).",
        "duration",
        low=0,
    )


@dataclass(frozen=True)
class WebhookSettings:
    url: str = setting("", "Where signals are POSTed (http:// or https://).", "url")
    format: str = setting("json", "Payload format: json, slack or ecs.", "choice:json,slack,ecs")
    secret: str = setting("", "HMAC-SHA256 key for X-Rarenet-Signature.", "str", True)
    timeout: float = setting(
        10.0, "Time for a whole attempt (connect, send, response).", "duration", low=0.001
    )
    name: str = setting(
        "",
        "Name in the outbox and in output (default: the URL's host + a short hash of the URL; "
        "URLs are never printed).",
    )
    headers: list[str] = setting(
        [], 'Extra request headers, each "Name: value".', "list", secret=True
    )
    dead_letter_after: float = setting(
        86400.0,
        "Give up on a delivery (state dead) this long after it was queued.",
        "duration",
        low=1,
    )
    max_backoff: float = setting(
        900.0,
        "Longest wait between attempts (exponential from 2s, with jitter).",
        "duration",
        low=1,
    )
    alert_after: float = setting(
        3600.0,
        "A delivery still failing this long after its first attempt makes the webhook a "
        "failing part of Health and /healthz (until it delivers again).",
        "duration",
        low=1,
    )


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("127.0.0.1", "Address `rarenet serve` binds.")
    port: int = setting(8089, "Port `rarenet serve` binds.", "int", low=1, high=65535)
    header_timeout: float = setting(
        10.0, "A connection's time to send a request's headers.", "duration", low=1
    )
    body_timeout: float = setting(
        10.0, "Longest silence while a request body arrives.", "duration", low=1
    )
    request_timeout: float = setting(
        120.0, "A request's whole time to arrive, headers and body.", "duration", low=1
    )
    max_connections_per_peer: int = setting(
        256, "Connections one client address may hold (of 512).", "int", low=1, high=512
    )
    names: list[str] = setting(
        [],
        "Host names clients use to reach this server (the Host header must name one; "
        "globs like *.example.com allowed). Loopback names and the bind address always are.",
        "list",
    )
    snapshot_tokens: list[str] = setting(
        [],
        "Bearer tokens accepted by GET /v1/snapshot only (the hosts' [extension] token); "
        "none: the [ingest] tokens are accepted there too (older configs).",
        "list",
        True,
    )
    metrics_tokens: list[str] = setting(
        [], "Bearer tokens accepted by GET /metrics only (the scraper's).", "list", True
    )
    trusted_proxies: list[str] = setting(
        [],
        "Addresses/CIDRs of an authenticating reverse proxy whose user_header is trusted.",
        "list",
    )
    user_header: str = setting(
        "", "Header carrying the signed-in user from a trusted proxy, e.g. X-Forwarded-User."
    )
    proxy_role: str = setting(
        "viewer",
        "Role of a proxy-signed-in user who has no local account (none: refuse them).",
        "choice:none,viewer,analyst,admin",
    )
    max_ingest_lag: float = setting(
        7200.0,
        "When the newest stored data is older than this, ingest is a failing part of "
        "Health and /healthz: nothing is arriving, or only old logs are (0: never).",
        "duration",
    )
    public_url: str = setting(
        "",
        "The console's address as people reach it (e.g. https://rarenet.example.com): every "
        "delivered signal links to its page there (none: no link).",
        "url",
    )
    fleet_url: str = setting(
        "",
        "Fleet's address (e.g. https://fleet.example.com): every delivered signal links to "
        "its host in Fleet (none: no link).",
        "url",
    )


@dataclass(frozen=True)
class ExtensionSettings:
    snapshot_url: str = setting("", "Where the extension fetches its snapshot (GET /v1/snapshot).")
    snapshot_path: str = setting("", "Or a snapshot file to read instead.", "path")
    token: str = setting("", "Bearer token for snapshot_url.", "str", True)
    cache_dir: str = setting("/var/cache/rarenet", "Where the last good snapshot is kept.", "path")
    refresh: float = setting(300.0, "How often the snapshot is refreshed.", "duration", low=1)


@dataclass(frozen=True)
class NatsSettings:
    servers: list[str] = setting(
        [], "JetStream servers `rarenet serve` consumes from (nats://HOST:PORT); none: off.", "list"
    )
    stream: str = setting("OSQUERY", "The stream Fleet's `nats` destination publishes into.")
    subject: str = setting("", "Filter subject of the consumer (empty: the whole stream).")
    durable: str = setting("rarenet", "The durable consumer's name (one per store).")
    batch: int = setting(500, "Messages per fetch and commit.", "int", low=1, high=100_000)
    ack_wait: float = setting(
        60.0, "Time the server waits for an ack before redelivering.", "duration", low=1
    )


SECTIONS: dict[str, type] = {
    "store": StoreSettings,
    "ingest": IngestSettings,
    "collect": CollectSettings,
    "detect": DetectSettings,
    "server": ServerSettings,
    "extension": ExtensionSettings,
    "nats": NatsSettings,
}


@dataclass(frozen=True)
class Config:
    store: StoreSettings = field(default_factory=StoreSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    collect: CollectSettings = field(default_factory=CollectSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    extension: ExtensionSettings = field(default_factory=ExtensionSettings)
    nats: NatsSettings = field(default_factory=NatsSettings)
    webhooks: tuple[WebhookSettings, ...] = ()
    source: str | None = None


def _convert(kind: str, raw: Any) -> Any:
    """Turn a TOML/env/CLI value into the setting's type; raises ValueError."""
    if kind == "duration":
        return parse_duration(raw)
    if kind == "size":
        return parse_size(raw)
    if kind == "int":
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ValueError
            return int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
    if kind == "float":
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError
            return float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    if kind == "list:url":
        urls = _convert("list", raw)
        return [_check_url(url) for url in urls]
    if kind == "list":
        if isinstance(raw, str):
            return [part.strip() for part in raw.split(",") if part.strip()]
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return list(raw)
        raise ValueError(f"{raw!r} is not a list of strings")
    if kind == "url":
        return "" if raw == "" else _check_url(raw)  # "": not set
    if kind.startswith("choice:"):
        choices = kind.removeprefix("choice:").split(",")
        if raw not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return raw
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not a string")
    return raw


def _check_url(raw: Any) -> str:
    """An http(s) URL with a host. The value is never echoed: webhook URLs often carry
    their credential (Slack's do), and errors end up in logs."""
    if not isinstance(raw, str):
        raise ValueError("is not a string")
    parts = urllib.parse.urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(
            f"is not an http:// or https:// URL with a host ({shown}; the value is not shown)"
        )
    return raw.strip()


def _check_range(value: Any, low: float | None, high: float | None) -> None:
    if not isinstance(value, int | float):
        return
    if value != value:  # NaN
        raise ValueError("is not a number")
    if low is not None and value < low:
        raise ValueError(f"{value:g} is below the minimum {low:g}")
    if high is not None and value > high:
        raise ValueError(f"{value:g} is above the maximum {high:g}")


def _locate(text: str, section: str, key: str, index: int = 0) -> int | None:
    """The 1-based line of `key` inside `[section]` (or the index-th `[[section]]`)."""
    current: str | None = None
    seen = -1
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?", stripped)
        if header:
            current = header.group(1)
            if current == section:
                seen += 1
            continue
        if current == section and seen == index and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return number
    return None


def _apply(
    settings: Any,
    values: Mapping[str, Any],
    where: Callable[[str], str],
    toml: bool = False,
) -> Any:
    """A copy of a section dataclass with `values` converted and applied. From a TOML
    file (`toml`) a value must have the setting's shape: a list as a TOML array, a
    duration with its unit (environment variables and options are strings)."""
    known = {f.name: f for f in fields(settings)}
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        spec = known.get(key)
        if spec is None:
            raise ConfigError(
                f"unknown setting {key!r}",
                where=where(key),
                hint=f"known: {', '.join(sorted(known))}",
            )
        if toml:
            _check_shape(spec.metadata["kind"], raw, key, where(key))
        try:
            value = _convert(spec.metadata["kind"], raw)
            _check_range(value, spec.metadata["low"], spec.metadata["high"])
        except ValueError as exc:
            message = str(exc)
            if spec.metadata["secret"]:  # never echo a secret (errors end up in logs)
                message = f"not a valid {spec.metadata['kind']} (the value is secret: not shown)"
            raise ConfigError(message, where=where(key)) from None
        if spec.metadata["secret"] and spec.name.endswith(("tokens", "token")):
            check_tokens(value if isinstance(value, list) else [value] if value else [], where(key))
        changes[key] = value
    return replace(settings, **changes)


def _check_shape(kind: str, raw: Any, key: str, where: str) -> None:
    """Refuse a TOML value whose shape is a slip (said without echoing the value): a
    string where a list is meant (`tokens = "x"`), a bare number where a duration is
    (`retention = 30` would be 30 seconds)."""
    if kind.startswith("list") and isinstance(raw, str):
        raise ConfigError(
            "is a string, not a list", where=where, hint=f'write {key} = ["…", "…"] (a TOML array)'
        )
    if kind == "duration" and isinstance(raw, int | float) and not isinstance(raw, bool) and raw:
        raise ConfigError(
            "is a number without a unit (it would be seconds)",
            where=where,
            hint=f'write {key} = "{raw:g}s", "{raw:g}m", "{raw:g}h" or "{raw:g}d"',
        )


MIN_TOKEN_LENGTH = 16


def check_tokens(tokens: list[str], where: str) -> None:
    """Bearer tokens must be long enough not to be guessed (and to be redacted from logs
    without garbling them): at least MIN_TOKEN_LENGTH characters after trimming."""
    for number, token in enumerate(tokens, start=1):
        length = len(token.strip())
        if length < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"token #{number} is {length} characters; at least {MIN_TOKEN_LENGTH} are "
                "required (the value is secret: not shown)",
                where=where,
                hint=TOKEN_HINT,
            )


TOKEN_HINT = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """`--config`, then `$RARENET_CONFIG`, then `./rarenet.toml` if it exists."""
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", where=str(path)) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", where=str(path)) from None


def _from_file(config: Config, path: Path) -> Config:
    document, text = _read_toml(path)

    def where_in(section: str, index: int = 0) -> Callable[[str], str]:
        def where(key: str) -> str:
            line = _locate(text, section, key, index)
            location = f"{path}:{line}" if line else str(path)
            return f"{location}: [{section}] {key}"

        return where

    changes: dict[str, Any] = {}
    for section, values in document.items():
        if section == "webhooks":
            if not isinstance(values, list):
                raise ConfigError("use [[webhooks]] tables", where=f"{path}: webhooks")
            hooks = []
            for index, table in enumerate(values):
                hook = _apply(WebhookSettings(), table, where_in("webhooks", index), toml=True)
                if not hook.url:
                    raise ConfigError(
                        "a webhook needs a url", where=f"{path}: [[webhooks]] #{index + 1}"
                    )
                hooks.append(hook)
            changes["webhooks"] = tuple(hooks)
            continue
        if section not in SECTIONS or not isinstance(values, dict):
            raise ConfigError(
                f"unknown section [{section}]",
                where=str(path),
                hint=f"known: {', '.join([*SECTIONS, 'webhooks'])}",
            )
        changes[section] = _apply(getattr(config, section), values, where_in(section), toml=True)
    return replace(config, source=str(path), **changes)


def _env_where(prefix: str) -> Callable[[str], str]:
    return lambda key: f"${prefix}{key.upper()}"


def _from_env(config: Config, env: Mapping[str, str]) -> Config:
    changes: dict[str, Any] = {}
    for section in SECTIONS:
        prefix = f"RARENET_{section.upper()}_"
        values = {
            name.removeprefix(prefix).lower(): value
            for name, value in env.items()
            if name.startswith(prefix)
        }
        if values:
            changes[section] = _apply(getattr(config, section), values, _env_where(prefix))
    hook_values = {
        name.removeprefix("RARENET_WEBHOOKS_").lower(): value
        for name, value in env.items()
        if name.startswith("RARENET_WEBHOOKS_")
    }
    if hook_values:
        first = config.webhooks[0] if config.webhooks else WebhookSettings()
        hook = _apply(first, hook_values, lambda key: f"$RARENET_WEBHOOKS_{key.upper()}")
        changes["webhooks"] = (hook, *config.webhooks[1:])
    if env.get(DB_ENV):
        store = changes.get("store", config.store)
        changes["store"] = replace(store, path=env[DB_ENV])
    return replace(config, **changes)


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build the effective configuration.

    `overrides` maps section → {key: value} from command-line flags (highest precedence).
    """
    environ = os.environ if env is None else env
    config = Config()
    config_file = find_config_file(path, environ)
    if config_file is not None:
        config = _from_file(config, config_file)
    config = _from_env(config, environ)
    for section, values in (overrides or {}).items():
        config = override(config, section, values)
    if config.detect.role == "shard" and config.detect.shards:
        raise ConfigError(
            'a shard ([detect] role = "shard") cannot itself list shards',
            where="[detect] shards",
            hint='list the shards on the detection node, whose role is "node"',
        )
    return config


def override(config: Config, section: str, values: Mapping[str, Any]) -> Config:
    """`config` with command-line values (None: not given) applied to `section`,
    validated like any other source; errors name the flag (`--key`)."""
    present = {key: value for key, value in values.items() if value is not None}
    if not present:
        return config
    updated = _apply(getattr(config, section), present, lambda key: f"--{key}")
    return replace(config, **{section: updated})


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(section, key, default as written in TOML, help) for every setting, for docs."""
    rows = []
    for section, cls in [*SECTIONS.items(), ("webhooks", WebhookSettings)]:
        for spec in fields(cls):
            kind = spec.metadata["kind"]
            default: Any = (
                spec.default_factory() if callable(spec.default_factory) else spec.default
            )
            if kind == "duration":
                shown = f'"{format_duration(default)}"'
            elif kind == "size":
                shown = f'"{default // 1024**2}MiB"' if default % 1024**2 == 0 else str(default)
            elif isinstance(default, str):
                shown = f'"{default}"'
            elif isinstance(default, list):
                shown = "[" + ", ".join(f'"{item}"' for item in default) + "]"
            else:
                shown = f"{default:g}" if isinstance(default, float) else str(default)
            rows.append((section, spec.name, shown, spec.metadata["help"]))
    return rows
