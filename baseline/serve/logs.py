"""The log lines of `rarenet serve` (its own and uvicorn's): the CLI's plain `rarenet: `
format, never coloured, tokens redacted, all on stderr (stdout is the console's)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from uvicorn.logging import AccessFormatter


def _label(record: logging.LogRecord) -> str:
    """`warning: `, `error: ` above INFO (as the CLI's `rarenet: error: …`); else nothing."""
    return "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "


class PlainFormatter(logging.Formatter):
    """`rarenet: message`, `rarenet: warning: message`. uvicorn's formatter would print a
    coloured `INFO:` on a terminal."""

    def __init__(self, use_colors: bool | None = None) -> None:
        del use_colors  # uvicorn passes it when told to colour: these lines never are
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return f"rarenet: {_label(record)}{super().format(record)}"


class PlainAccessFormatter(AccessFormatter):
    """`rarenet: 127.0.0.1:50312 - "GET /healthz HTTP/1.1" 200 OK`, uncoloured."""

    def __init__(self, use_colors: bool | None = None) -> None:
        del use_colors
        super().__init__('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)

    def format(self, record: logging.LogRecord) -> str:
        return f"rarenet: {_label(record)}{super().format(record)}"


def log_config(access_log: bool, tokens: Sequence[str] = ()) -> dict[str, Any]:
    """uvicorn's `log_config`: its loggers and rarenet's in plain lines on stderr, tokens
    redacted from every line, start-up chatter off (uvicorn.error at WARNING); rarenet's
    other loggers (delivery, stream) show their warnings."""
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": "rarenet.baseline.serve.auth.RedactTokens", "tokens": list(tokens)}
        },
        "formatters": {
            "default": {"()": f"{__name__}.PlainFormatter"},
            "access": {"()": f"{__name__}.PlainAccessFormatter"},
        },
        "handlers": {
            name: {**handler, "formatter": name, "filters": ["redact"]}
            for name in ("default", "access")
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {
                "handlers": ["access"],
                "level": "INFO" if access_log else "WARNING",
                "propagate": False,
            },
            "rarenet": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "rarenet.serve": {"level": "INFO"},
        },
    }
