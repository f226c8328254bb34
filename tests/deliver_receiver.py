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
