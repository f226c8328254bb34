"""One error family whose members say where the problem is and what to do."""

from __future__ import annotations

# Exit codes (documented in README.md, "Exit codes").
EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_RUNTIME = 3


class RarenetError(Exception):
    """Base error: a message, an optional location (`path:line` or config key) and a hint."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(RarenetError):
    """A setting is missing, malformed or out of range."""

    exit_code = EXIT_BAD_INPUT


class InputError(RarenetError):
    """An input file or document cannot be used at all."""

    exit_code = EXIT_BAD_INPUT


class StoreError(RarenetError):
    """The SQLite store cannot be opened, migrated or written."""

    exit_code = EXIT_RUNTIME


class BindError(RarenetError):
    """The server cannot listen on its address and port (in use, not this host's, or
    not allowed)."""

    exit_code = EXIT_RUNTIME
