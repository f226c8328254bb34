"""A snapshot document to start from, and a real HTTP server handing it out as rarenet
serve's GET /v1/snapshot does (token, ETag, optional delay, status or redirect): what
the extension's sync is tested against."""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any


def snapshot_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "generated_at": "2026-01-19T00:00:03Z",
        "data_time": "2026-01-19T00:00:00Z",
        "host": "web-1",
        "bucket_span": 900,
        "history": 1209600,
        "warmup_buckets": 20,
        "fleet": {"host_buckets": 268800, "hosts": 200, "buckets": 1344,
                  "since": "2026-01-05T00:00:00Z", "mature": True},
        "host_activity": {"active_buckets": 1344, "mature_buckets": 288},
        "entries": [
            {"name": "bash", "path": "/usr/bin/bash", "hosts": 20, "host_buckets": 26880,
             "first_seen": "2026-01-05T00:00:00Z", "last_seen": "2026-01-18T23:45:00Z",
             "rarity": 0.0, "host_buckets_on_host": 0},
            {"name": "nginx", "path": "/usr/sbin/nginx", "hosts": 150, "host_buckets": 80640,
             "first_seen": "2026-01-05T00:00:00Z", "last_seen": "2026-01-18T23:45:00Z",
             "rarity": 0.0, "host_buckets_on_host": 1344},
        ],
    }  # fmt: skip
    doc.update(changes)
    return doc


class SnapshotServer:
    """GET /v1/snapshot with a token, an ETag and an optional delay or status."""

    def __init__(self, body: bytes) -> None:
        self.body, self.delay, self.status = body, 0.0, 200
        self.redirect = ""  # a Location to send /v1/snapshot to (once per request)
        self.requests: list[dict[str, str]] = []
        owner = self

        class Handler_(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append({"path": self.path, **dict(self.headers.items())})
                time.sleep(owner.delay)
                if owner.redirect and self.path.startswith("/v1/snapshot?"):
                    self.send_response(302)
                    self.send_header("Location", owner.redirect)
                    self.end_headers()
                    return
                if self.headers.get("Authorization") != "Bearer tok":
                    self.send_response(401)
                    self.end_headers()
                    return
                if owner.status != 200:
                    self.send_response(owner.status)
                    self.end_headers()
                    return
                if self.headers.get("If-None-Match") == '"v1"':
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler_)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/snapshot"

    def __enter__(self) -> SnapshotServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delay = 0
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
