"""Run the API on uvicorn: bind (port 0 = any free port), serve, stop cleanly.

SIGTERM / SIGINT: uvicorn stops accepting, lets in-flight requests finish (their
group commit included), then the app's lifespan stops the scheduler (waiting for a
running job) and the writer (committing what is queued). The process then exits 0 —
uvicorn's own handling would re-raise the signal and die by it, so signals are
captured here instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable, Generator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from rarenet.baseline.access.credentials import Credentials
from rarenet.baseline.config import Config, ServerSettings
from rarenet.baseline.detect.rule import RunResult
from rarenet.baseline.errors import BindError, StoreError
from rarenet.baseline.serve.app import Api
from rarenet.baseline.serve.auth import check_bind
from rarenet.baseline.serve.logs import log_config
from rarenet.baseline.serve.store_lock import serving_alone
from rarenet.baseline.store import Store
from rarenet.baseline.store.health import RECOVER_HINT, WHOLE_CHECK_MAX_BYTES, check_summary

GRACEFUL_SECONDS = 30  # longest wait for in-flight requests on shutdown
MAX_CONNECTIONS = 512  # beyond this, new requests get 503 at once
LINGER_SECONDS = 2.0  # reading (and dropping) an unread body after its final response
MAX_LINGERING = 256  # connections lingering at once; past this, closed at once

log = logging.getLogger("rarenet.serve")


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection deadlines and caps (`[server]`, docs/operations.md)."""

    header_seconds: float = 10.0
    body_idle_seconds: float = 10.0
    request_seconds: float = 120.0
    per_peer: int = 256

    @classmethod
    def of(cls, settings: ServerSettings) -> ConnectionLimits:
        return cls(
            settings.header_timeout,
            settings.body_timeout,
            settings.request_timeout,
            settings.max_connections_per_peer,
        )


_BUSY_BODY = (
    b'{"error":"too many connections from this address ([server] max_connections_per_peer)"}'
)
_PEER_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY


def _peer_of(protocol: object) -> str | None:
    client = getattr(protocol, "client", None)
    return str(client[0]) if client else None


def _no_delay(transport: asyncio.Transport) -> None:
    """Send each write at once: h11 writes a response's headers and body separately,
    and with Nagle on the body waits for the client's delayed ACK (~40 ms a response,
    measured on loopback)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _H11(H11Protocol):
    """uvicorn's h11 protocol with nginx-style deadlines. uvicorn has none: a connection
    that dribbles a header byte now and then, or that got its 401 before its body and
    then sends one byte and goes silent, is kept forever, and MAX_CONNECTIONS of them
    (no token needed) turn every Fleet post into a 503 that Fleet never retries.

    * headers must arrive within `header_seconds` of the connection (or of the previous
      response); a body may pause at most `body_idle_seconds`, and the whole request
      must arrive within `request_seconds`; past any of them the connection is closed;
    * a final response sent before its body was read (401, 413, 415) ends the
      connection: it stops counting against the limit at once, reads and drops what
      the client is still sending for LINGER_SECONDS (so the client sees the response,
      not a reset), then closes;
    * one client address may hold at most `per_peer` connections."""

    limits = ConnectionLimits()
    lingering = 0  # connections lingering now (class-wide: one event loop)

    _deadline: asyncio.TimerHandle | None = None  # headers, whole request, or linger
    _idle: asyncio.TimerHandle | None = None  # silence during a body
    _phase = "headers"  # headers | body | app | linger
    _began = 0.0  # loop time the current request's headers were first awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        peer = _peer_of(self)
        if peer is not None and self.limits.per_peer < MAX_CONNECTIONS:
            held = sum(1 for c in self.connections if _peer_of(c) == peer)
            if held > self.limits.per_peer:
                transport.write(_PEER_BUSY)
                transport.close()
                return
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self._phase == "linger":
            return  # dropped: the response was final
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        unread = self.conn.their_state is h11.SEND_BODY
        if unread and not self.transport.is_closing():
            self.server_state.total_requests += 1
            self._linger()
            return
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()  # the next request on this keep-alive connection
            self._follow()  # a pipelined one may already be under way

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._phase == "linger":
            type(self).lingering -= 1
            self._phase = "closed"
        super().connection_lost(exc)

    # -- the phases -------------------------------------------------------------------

    def _await_headers(self) -> None:
        self._phase = "headers"
        self._cancel_timers()
        self._began = self.loop.time()
        self._deadline = self.loop.call_later(self.limits.header_seconds, self._overdue)

    def _follow(self) -> None:
        """Move the timers along with h11's view of the client's request."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._phase = "body"
                self._cancel_timers()
                spent = self.loop.time() - self._began
                remaining = max(0.0, self.limits.request_seconds - spent)
                self._deadline = self.loop.call_later(remaining, self._overdue)
            if self._idle is not None:
                self._idle.cancel()
            self._idle = self.loop.call_later(self.limits.body_idle_seconds, self._silent)
        elif state is not h11.IDLE and self._phase in ("headers", "body"):
            self._phase = "app"  # the request is in: the application's time now
            self._cancel_timers()

    def _overdue(self) -> None:
        if self._phase not in ("headers", "body") or self.transport.is_closing():
            return
        self.transport.close()

    def _silent(self) -> None:
        """The body paused too long, unless the pause is ours (reading is paused while the
        app has not taken what is buffered)."""
        self._idle = None
        if self._phase == "body" and self.flow.read_paused:
            self._idle = self.loop.call_later(self.limits.body_idle_seconds, self._silent)
            return
        self._overdue()

    def _linger(self) -> None:
        self._cancel_timers()
        self.connections.discard(self)  # costs no slot from here on
        if type(self).lingering >= MAX_LINGERING or not self.transport.can_write_eof():
            self.transport.close()
            return
        type(self).lingering += 1
        self._phase = "linger"
        self.transport.write_eof()  # after the response is flushed
        self.flow.resume_reading()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _cancel_timers(self) -> None:
        for timer in (self._deadline, self._idle):
            if timer is not None:
                timer.cancel()
        self._deadline = self._idle = None


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


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


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
    on_line: Callable[[str], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status. `on_line` gets the heartbeat
    (baseline.serve.heartbeat; default: the log)."""
    host, port = config.server.host, config.server.port
    credentials = Credentials.from_config(config)
    check_bind(host, credentials.secrets())
    if credentials.snapshot_from_ingest:
        log.warning(
            "GET /v1/snapshot accepts the [ingest] tokens because [server] snapshot_tokens "
            "is not set: give the hosts a snapshot token of their own (docs/operations.md)"
        )
    with serving_alone(config.store.path, f"{host}:{port}"):
        return _serve_alone(config, local, access_log, on_run, on_ready, on_line)


def _serve_alone(
    config: Config,
    local: bool,
    access_log: bool,
    on_run: Callable[[RunResult], None] | None,
    on_ready: Callable[[str], None] | None,
    on_line: Callable[[str], None] | None,
) -> int:
    """`serve` once it holds the store's serve lock."""
    host, port = config.server.host, config.server.port
    credentials = Credentials.from_config(config)
    with Store(config.store.path) as store:  # migrate, and fail here (exit 3) if unusable
        large = _file_size(config.store.path) > WHOLE_CHECK_MAX_BYTES
        problems = store.check_small_tables() if large else store.check()
    if problems:
        raise StoreError(
            f"the store is corrupt ({check_summary(problems)})",
            where=config.store.path,
            hint=RECOVER_HINT,
        )
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise BindError(
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
        on_line=on_line,
        check_in_background=large,
    )
    server = _Server(
        uvicorn.Config(
            api.app(),
            loop="asyncio",
            http=type("_H11Limited", (_H11,), {"limits": ConnectionLimits.of(config.server)}),
            lifespan="on",
            log_config=log_config(access_log, credentials.secrets()),
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
