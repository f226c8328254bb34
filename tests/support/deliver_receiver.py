"""A real HTTP webhook receiver on loopback for delivery tests: scriptable replies
(status, delay, headers) per request, every request recorded (headers, body, time)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Loopback receivers are reached directly even where an HTTP proxy is configured.
os.environ["NO_PROXY"] = ",".join(
    filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"])
)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request arrived

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")


Script = Callable[[int, Seen], Reply]


class Receiver:
    """`ThreadingHTTPServer` on 127.0.0.1; `script(n, request)` decides each reply
    (n counts requests from 0). Requests are recorded on arrival, before any delay."""

    def __init__(self, script: Script | None = None, port: int = 0):
        self.script: Script = script or (lambda _n, _r: Reply())
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                seen = Seen(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                with receiver.lock:
                    number = len(receiver.requests)
                    receiver.requests.append(seen)
                reply = receiver.script(number, seen)
                if reply.delay and receiver.stopping.wait(reply.delay):
                    return
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=s3cr3t-token"

    def received_keys(self) -> list[str]:
        with self.lock:
            return [r.key for r in self.requests]

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextmanager
def receiving(script: Script | None = None, port: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(script, port).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def refused_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def statuses(*codes: int, then: int = 200, headers: dict[str, str] | None = None) -> Script:
    """Reply with `codes` in order, then `then` forever."""

    def script(n: int, _seen: Seen) -> Reply:
        if n < len(codes):
            return Reply(codes[n], headers=headers or {}, body=b"nope")
        return Reply(then)

    return script


class Trickler:
    """A webhook receiver that reads each request, then sends its response one byte
    every `every` seconds (a status line, then an endless header) for at most `limit`
    seconds: requests' per-read timeout never fires on it."""

    def __init__(self, every: float = 0.3, limit: float = 60.0) -> None:
        self.every, self.limit = every, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.arrivals: list[float] = []
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slow"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                self.arrivals.append(time.monotonic())
                reply = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000
                ends = time.monotonic() + self.limit
                for byte in reply:
                    if time.monotonic() > ends or self.stopping.wait(self.every):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up

    def __enter__(self) -> Trickler:
        self.acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(5)
        self.acceptor.join(5)
