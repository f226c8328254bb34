"""The extension's settings: `[extension]` of rarenet.toml and `RARENET_EXTENSION_*`.

Same precedence as the central service (baseline/config.py), read here with tomllib so
hosts need nothing else: built-in default < `rarenet.toml` (`$RARENET_CONFIG`, then
`./rarenet.toml`) < environment. A bad value raises `SettingsError` naming the key and
where it came from. Other sections of the file are ignored (they are the service's).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

CONFIG_ENV = "RARENET_CONFIG"
CONFIG_NAME = "rarenet.toml"
ENV_PREFIX = "RARENET_EXTENSION_"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the key and its source."""


@dataclass(frozen=True)
class ExtensionSettings:
    snapshot_url: str = ""  # GET /v1/snapshot of `rarenet serve`
    snapshot_path: str = ""  # or a snapshot file (rarenet baseline export --out)
    token: str = ""  # bearer token for snapshot_url
    cache_dir: str = "/var/cache/rarenet"  # last good snapshot
    refresh: float = 300.0  # seconds between refreshes


_KINDS = {
    "snapshot_url": "str",
    "snapshot_path": "str",
    "token": "str",
    "cache_dir": "str",
    "refresh": "duration",
}


def parse_duration(value: object) -> float:
    """Seconds from 90, "90s", "15m", "1.5h", "14d"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. 90s, 15m, 1.5h)")
    if seconds < 1:
        raise ValueError(f"{value!r} is below the minimum of 1s")
    return seconds


def load_settings(env: Mapping[str, str] | None = None) -> ExtensionSettings:
    """Defaults, then the config file's `[extension]`, then `RARENET_EXTENSION_*`."""
    environ = os.environ if env is None else env
    settings = ExtensionSettings()
    path = config_file(environ)
    if path is not None:
        settings = _apply(settings, _read_section(path), lambda k: f"{path}: [extension] {k}")
    values = {
        name.removeprefix(ENV_PREFIX).lower(): value
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX)
    }
    return _apply(settings, values, lambda k: f"${ENV_PREFIX}{k.upper()}")


def config_file(env: Mapping[str, str]) -> Path | None:
    """`$RARENET_CONFIG` (must exist), else `./rarenet.toml` when present."""
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = Path(CONFIG_NAME)
    return local if local.is_file() else None


def _read_section(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found (${CONFIG_ENV})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    section = document.get("extension", {})
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [extension] must be a table")
    return section


def _apply(settings: ExtensionSettings, values: Mapping[str, Any], where: Any) -> ExtensionSettings:
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        kind = _KINDS.get(key)
        if kind is None:
            raise SettingsError(f"{where(key)}: unknown setting (known: {', '.join(_KINDS)})")
        try:
            if kind == "duration":
                changes[key] = parse_duration(raw)
            elif isinstance(raw, str):
                changes[key] = raw
            else:
                raise ValueError(f"{raw!r} is not a string")
        except ValueError as exc:
            raise SettingsError(f"{where(key)}: {exc}") from None
    return replace(settings, **changes)
