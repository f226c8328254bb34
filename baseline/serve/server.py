"""Run the API on uvicorn: bind (port 0 = any free port), serve, stop cleanly.

SIGTERM / SIGINT: uvicorn stops accepting, lets in-flight requests finish (their
group commit included), then the app's lifespan stops the scheduler (waiting for a
running job) and the writer (committing what is queued). The process then exits 0 —
uvicorn's own handling would re-raise the signal and die by it, so signals are
captured here instead.
"""

from __future__ import annotations

import asyncio
import copy
import signal
import socket
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from typing import Any

import h11
import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from baseline.config import Config
from baseline.detect.rule import RunResult
from baseline.errors import StoreError
from baseline.serve.app import Api
from baseline.serve.auth import check_bind, configured_tokens
from baseline.store import Store

GRACEFUL_SECONDS = 30  # longest wait for in-flight requests on shutdown
MAX_CONNECTIONS = 512  # beyond this, new requests get 503 at once
HEADER_SECONDS = 10.0  # a connection must deliver a request's headers within this


class _H11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers. uvicorn has
    none: a connection that sends nothing, or dribbles a header byte now and then, is
    kept forever, and MAX_CONNECTIONS of them (from anyone who can connect; no token is
    needed to open a socket) turn every Fleet post into a 503 that Fleet never retries."""

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_headers()  # the next request on this keep-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(HEADER_SECONDS, self._headers_overdue)

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # no request line and headers yet: drop it


class _Server(uvicorn.Server):
    """uvicorn's server, with signals that end `run` normally (exit status 0)."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def log_config(access_log: bool, tokens: Sequence[str] = ()) -> dict[str, Any]:
    """uvicorn's logging, with tokens redacted from every line and quieter start-up."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "redact": {"()": "baseline.serve.auth.RedactTokens", "tokens": list(tokens)}
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
        handler["stream"] = "ext://sys.stderr"  # stdout is the console sink's
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "INFO" if access_log else "WARNING"
    config["loggers"]["rarenet.serve"] = {"handlers": ["default"], "level": "INFO"}
    return config


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    config: Config,
    *,
    local: bool = False,
    access_log: bool = True,
    on_run: Callable[[RunResult], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status."""
    host, port = config.server.host, config.server.port
    tokens = configured_tokens(config.ingest.tokens)
    check_bind(host, tokens)
    with Store(config.store.path):  # migrate, and fail here (exit 3) if unusable
        pass
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise StoreError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            where="[server] host/port",
            hint="is another rarenet serve running? pick another --port",
        ) from None
    bound = sock.getsockname()[1]
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    url = f"http://{shown}:{bound}"
    api = Api(
        config,
        local=local,
        on_run=on_run,
        on_ready=(lambda: on_ready(url)) if on_ready else None,
    )
    server = _Server(
        uvicorn.Config(
            api.app(),
            loop="asyncio",
            http=_H11,
            lifespan="on",
            log_config=log_config(access_log, tokens),
            access_log=access_log,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            limit_concurrency=MAX_CONNECTIONS,
            server_header=False,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 3
