"""Keep the current snapshot in memory, refreshed in the background, cached on disk.

`SnapshotSync` fetches `GET <snapshot_url>` (bearer token, `If-None-Match` with the last
ETag) or reads `snapshot_path` every `refresh` seconds in its own thread. A snapshot that
parses and has version 1 replaces the current one and is written to
`<cache_dir>/snapshot.json` (atomically), so a restart starts from the last good copy.
Table `generate` only reads `current` and `status`: a hanging server never blocks it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarenet.extension.settings import ExtensionSettings
from rarenet.extension.snapshot import (
    Snapshot,
    SnapshotError,
    from_document,
    load_document,
    parse_snapshot,
)

log = logging.getLogger("rarenet.extension")

MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024  # with MAX_ENTRIES: a parse peaks under 200 MiB
FETCH_DEADLINE = 300.0  # seconds for a whole snapshot body
MAX_REFRESH = 30 * 86400.0  # seconds; Event.wait raises OverflowError past ~292 years
CACHE_NAME = "snapshot.json"
ETAG_NAME = "snapshot.etag"


@dataclass(frozen=True)
class State:
    """What generate sees: the snapshot (or None) and a one-line status."""

    snapshot: Snapshot | None
    status: str
    source: str


class SnapshotSync:
    def __init__(
        self,
        settings: ExtensionSettings,
        host: str | None = None,
        fetch_timeout: float = 30.0,
        fetch_deadline: float = FETCH_DEADLINE,
    ) -> None:
        self.settings = settings
        self.host = host if host is not None else socket.gethostname()
        self.fetch_timeout = fetch_timeout  # per socket operation
        self.fetch_deadline = fetch_deadline  # for the whole body
        self._state = State(None, "no snapshot yet: first refresh pending", "")
        self._etag: str | None = None
        self._file_stamp: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0

    @property
    def state(self) -> State:
        return self._state  # one attribute read: atomic, never blocks

    def configure_error(self, message: str) -> None:
        """Report a configuration problem in every row (the extension keeps running)."""
        self._state = State(self._state.snapshot, message, "")

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.load_cache()
        self._thread = threading.Thread(target=self._run, name="rarenet-snapshot", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_once()
            self._stop.wait(min(self.settings.refresh, MAX_REFRESH))  # wait() overflows

    # -- one refresh ---------------------------------------------------------------------

    def refresh_once(self) -> None:
        """Fetch or read once; never raises (the status says what went wrong)."""
        try:
            if self.settings.snapshot_url:
                self._refresh_url()
            elif self.settings.snapshot_path:
                self._refresh_file(Path(self.settings.snapshot_path))
            else:
                self._fail(
                    "no snapshot source: set [extension] snapshot_url or snapshot_path "
                    "(or RARENET_EXTENSION_SNAPSHOT_URL / _SNAPSHOT_PATH)"
                )
        except Exception as exc:  # a refresh must never kill the thread
            log.exception("snapshot refresh failed")
            self._fail(f"snapshot refresh failed: {exc}")
        finally:
            self.refreshes += 1

    def _refresh_url(self) -> None:
        import urllib.error  # only here: urllib.request (http.client, ssl) is ~8 MB resident
        import urllib.request

        url = self.settings.snapshot_url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            self._fail(f"snapshot_url {url!r} is not an http(s) URL")
            return
        query = urllib.parse.parse_qs(parts.query)
        if "host" not in query and self.host:
            extra = urllib.parse.urlencode({"host": self.host})
            url = urllib.parse.urlunsplit(
                parts._replace(query=f"{parts.query}&{extra}".lstrip("&"))
            )
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.settings.token:  # never copied to a redirect's request by urllib itself
            request.add_unredirected_header("Authorization", f"Bearer {self.settings.token}")
        if self._etag and self._state.snapshot is not None:
            request.add_header("If-None-Match", self._etag)
        opener = urllib.request.build_opener(_redirect_handler(self.settings.token))
        try:
            with opener.open(request, timeout=self.fetch_timeout) as response:
                body = _read_bounded(response, time.monotonic() + self.fetch_deadline)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 304 and self._state.snapshot is not None:
                self._ok(self._state.snapshot, "snapshot current (304 not modified)", url)
                return
            self._fail(f"GET {_safe(url)}: HTTP {exc.code} {exc.reason}")
            return
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            self._fail(f"GET {_safe(url)} failed: {reason}")
            return
        if len(body) > MAX_SNAPSHOT_BYTES:
            self._fail(f"GET {_safe(url)}: snapshot larger than {MAX_SNAPSHOT_BYTES} bytes")
            return
        staged = self._stage_cache(body)
        ok = False
        try:  # the staged copy is kept or removed whatever parsing raises
            text = self._decode(body, f"GET {_safe(url)}")
            del body  # peak memory: never the bytes, the text and the parsed snapshot at once
            ok = bool(text) and self._accept(text, f"GET {_safe(url)}")
        finally:
            self._commit_cache(staged, ok, etag)
        if ok:
            self._etag = etag

    def _refresh_file(self, path: Path) -> None:
        try:
            stat = path.stat()
        except OSError as exc:
            self._fail(f"snapshot_path {path}: {exc.strerror or exc}")
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._file_stamp and self._state.snapshot is not None:
            return
        try:
            with path.open("rb") as handle:  # bounded: a FIFO or /dev/zero never ends
                body = handle.read(MAX_SNAPSHOT_BYTES + 1)
        except OSError as exc:
            self._fail(f"snapshot_path {path}: {exc.strerror or exc}")
            return
        if len(body) > MAX_SNAPSHOT_BYTES:
            self._fail(f"snapshot_path {path}: larger than {MAX_SNAPSHOT_BYTES} bytes")
            return
        staged = self._stage_cache(body)
        ok = False
        try:
            text = self._decode(body, str(path))
            del body
            ok = bool(text) and self._accept(text, str(path))
        finally:
            self._commit_cache(staged, ok, None)
        if ok:
            self._file_stamp = stamp

    def load_cache(self) -> None:
        """Start from the last good snapshot on disk, if any (silently absent)."""
        if not self.settings.cache_dir:
            return
        cache = Path(self.settings.cache_dir) / CACHE_NAME
        try:
            body = cache.read_bytes()
        except OSError:
            return
        try:
            snapshot = parse_snapshot(body)
        except Exception as exc:  # a bad cache must never stop the extension from starting
            log.warning("ignoring cached snapshot %s: %s", cache, exc)
            return
        try:
            self._etag = (Path(self.settings.cache_dir) / ETAG_NAME).read_text().strip() or None
        except OSError:
            self._etag = None
        self._ok(snapshot, "cached snapshot (refresh pending)", str(cache))

    # -- helpers -------------------------------------------------------------------------

    def _decode(self, body: bytes | bytearray, source: str) -> list[str]:
        """The text in a one-item list (empty if not UTF-8): `_accept` takes it out, so
        the text is freed as soon as json has read it."""
        try:
            return [body.decode("utf-8")]
        except UnicodeDecodeError as exc:
            self._fail(f"{source}: not a snapshot: not UTF-8 ({exc.reason} at byte {exc.start})")
            return []

    def _accept(self, text: list[str], source: str) -> bool:
        try:
            document = load_document(text.pop())
            snapshot = from_document(document)
            del document
        except SnapshotError as exc:
            self._fail(f"{source}: {exc}")
            return False
        self._ok(snapshot, "snapshot current", source)
        return True

    def _ok(self, snapshot: Snapshot, status: str, source: str) -> None:
        self._state = State(snapshot, status, source)
        log.info("%s from %s (%d entries)", status, source, len(snapshot.entries))

    def _fail(self, message: str) -> None:
        current = self._state.snapshot
        if current is not None:
            message = f"{message}; using the last good snapshot"
        else:
            message = f"no snapshot: {message}"
        log.warning("%s", message)
        self._state = State(current, message, self._state.source)

    def _stage_cache(self, body: bytes | bytearray) -> Path | None:
        """Write `body` next to the cache (kept only if it parses: _commit_cache)."""
        if not self.settings.cache_dir:
            return None
        directory = Path(self.settings.cache_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{CACHE_NAME}.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            return Path(tmp)
        except OSError as exc:
            log.warning("cannot cache the snapshot in %s: %s", directory, exc)
            return None

    def _commit_cache(self, staged: Path | None, ok: bool, etag: str | None) -> None:
        if staged is None:
            return
        try:
            if not ok:
                staged.unlink()
                return
            os.replace(staged, staged.parent / CACHE_NAME)
            atomic_write(staged.parent / ETAG_NAME, (etag or "").encode())
        except OSError as exc:
            log.warning("cannot cache the snapshot in %s: %s", staged.parent, exc)


def _read_bounded(response: Any, deadline: float) -> bytearray:
    """The body, at most MAX_SNAPSHOT_BYTES + 1 of it, read by the `deadline`: the socket
    timeout alone lets a server that sends a byte every few seconds hold the refresh (and
    the last good snapshot's "current" status) forever."""
    body = bytearray()
    while len(body) <= MAX_SNAPSHOT_BYTES:
        if time.monotonic() > deadline:
            raise TimeoutError("the snapshot did not arrive in time (sent too slowly)")
        chunk = response.read1(min(1 << 20, MAX_SNAPSHOT_BYTES + 1 - len(body)))  # one recv
        if not chunk:
            break
        body += chunk
    return body


def _redirect_handler(token: str) -> Any:
    """urllib's redirect handling, minus its leaks: it copies every header (the bearer
    token too) to wherever a redirect points, other hosts and plain http included. Here
    the token follows a redirect only to the same host and port over the same scheme or
    from http to https; a redirect from https down to http, or to ftp, is refused."""
    import urllib.error
    import urllib.request

    class Redirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(
            self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
        ) -> Any:
            old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
            if new.scheme not in ("http", "https") or (old.scheme, new.scheme) == ("https", "http"):
                raise urllib.error.HTTPError(
                    newurl,
                    code,
                    f"refusing a redirect from {old.scheme} to {new.scheme}",
                    headers,
                    fp,
                )
            follow = super().redirect_request(req, fp, code, msg, headers, newurl)
            if follow is not None and token and _same_server(old, new):
                follow.add_unredirected_header("Authorization", f"Bearer {token}")
            return follow

    return Redirects()


def _same_server(old: urllib.parse.SplitResult, new: urllib.parse.SplitResult) -> bool:
    """Same host and port and scheme, or the same host's default http → https upgrade."""
    if new.scheme not in ("http", "https") or old.hostname != new.hostname:
        return False
    if old.scheme == new.scheme:
        return (old.port or 0) == (new.port or 0)
    return old.scheme == "http" and old.port in (None, 80) and new.port in (None, 443)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a new file created exclusively under a
    random name in the same directory (a planted link is never followed), synced, then
    renamed over `path`; removed again on any failure."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _safe(url: str) -> str:
    """The URL without a `token=` query value or a password (never log secrets)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    cleaned = [(k, "***" if k == "token" else v) for k, v in query]
    netloc = parts.netloc
    if parts.password is not None:  # rows carry this text: no password either
        netloc = f"{parts.username}:***@{netloc.rpartition('@')[2]}"
    return urllib.parse.urlunsplit(
        parts._replace(netloc=netloc, query=urllib.parse.urlencode(cleaned))
    )
