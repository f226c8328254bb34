"""The HTTP API (DESIGN §8) as a Starlette app; the scheduler and writer live in its lifespan.

| endpoint | credential (baseline/access) |
|---|---|
| POST /v1/ingest | an `[ingest] tokens` secret |
| GET /v1/snapshot | a `[server] snapshot_tokens` secret (none set: the ingest tokens) |
| POST /v1/shard | `[detect] shard_token`, on a `role = "shard"` server only |
| GET /metrics | a `[server] metrics_tokens` secret |
| GET /v1/signals | a person: session or personal API token (viewer or above) |
| GET /healthz, GET /openapi.json | none |

With no secret configured at all (loopback only) the machine routes are open. Every
request must name this server in `Host` (access/hosts.py). The triage console
(baseline/console) adds its pages at `/` for signed-in users (docs/operations.md#console).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from rarenet.baseline import __version__
from rarenet.baseline.access.credentials import Credentials, Purpose
from rarenet.baseline.access.hosts import RequireHost, allowed_names
from rarenet.baseline.config import Config
from rarenet.baseline.console.web import Console
from rarenet.baseline.deliver import list_signals
from rarenet.baseline.detect.remote import SHARD_OPS
from rarenet.baseline.detect.rule import RunResult
from rarenet.baseline.detect.source import LocalSource
from rarenet.baseline.errors import InputError, StoreError
from rarenet.baseline.ingest.chunks import build_parser
from rarenet.baseline.serve.bodies import BodyError, init_worker, parse_in_worker, worker_ready
from rarenet.baseline.serve.heartbeat import Heartbeat
from rarenet.baseline.serve.jobs import Jobs
from rarenet.baseline.serve.metrics import Metrics
from rarenet.baseline.serve.openapi import openapi_document
from rarenet.baseline.serve.shard_args import BadArgument, checked
from rarenet.baseline.serve.snapshots import Snapshot, SnapshotCache
from rarenet.baseline.serve.stream import StreamConsumer
from rarenet.baseline.serve.stream import settings_of as stream_settings
from rarenet.baseline.serve.writer import CommitWriter, WriterClosed
from rarenet.baseline.store import Store
from rarenet.baseline.store.deadline import TookTooLong, deadline
from rarenet.baseline.store.health import HealthRecord, check_summary, describe_failure
from rarenet.baseline.units import parse_time

log = logging.getLogger("rarenet.serve")

REFUSED_TYPES = ("multipart/",)  # a MIME-wrapped upload; curl -d (form type) is fine
MAX_HOST = 255
MAX_SIGNALS = 1000
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: SQLite integers end at 2**63
MAX_PARSE_WORKERS = 4
SHARD_AT_ONCE = 2  # shard questions worked on at once (a node asks one at a time)
SHARD_MAX_BODY = 64 << 20  # one batch of a detection node's questions (10k hosts: ~10 MiB)
DRAIN_FACTOR = 4  # an oversized body is read (and dropped) up to this many × max_body


def parse_workers() -> int:
    """Processes that parse bodies: one per CPU (the HTTP side needs little), up to 4."""
    return max(1, min(MAX_PARSE_WORKERS, len(os.sched_getaffinity(0))))


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _log_line(line: str) -> None:
    log.info("%s", line)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="rarenet"'} if status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class Api:
    """One server: its config, writer, metrics, snapshot cache and scheduled jobs."""

    def __init__(
        self,
        config: Config,
        *,
        local: bool = False,
        on_run: Callable[[RunResult], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_line: Callable[[str], None] | None = None,
        check_in_background: bool = False,
    ) -> None:
        self.config = config
        self.check_in_background = check_in_background
        self.credentials = Credentials.from_config(config)
        self.max_body = config.ingest.max_body
        build_parser(config)  # a bad [ingest] exclusion fails here, before anything starts
        write_gate = threading.Lock()  # ingest commits and presence folds take turns
        self.write_gate = write_gate
        self.shard_slots = asyncio.Semaphore(SHARD_AT_ONCE)  # POST /v1/shard at work at once
        self.health = HealthRecord()  # what last failed: the writer, jobs and reads report
        self.writer = CommitWriter(config.store.path, gate=write_gate, health=self.health)
        self.metrics = Metrics(self.open_store, int(config.detect.bucket_span))
        self.snapshots = SnapshotCache(config.detect)
        # The heartbeat's lines go to `on_line` (the CLI's console), else to the log.
        self.heartbeat = Heartbeat(on_line or _log_line, config.detect)
        self.metrics.on_ingest = self.heartbeat.ingested
        self.jobs = Jobs(
            config,
            self.metrics,
            self.snapshots,
            local=local,
            on_run=on_run,
            heartbeat=self.heartbeat,
            write_gate=write_gate,
            health=self.health,
        )
        self.on_ready = on_ready
        consumer = stream_settings(config)
        self.stream = (
            None
            if consumer is None
            else StreamConsumer(consumer, config, self.writer, self.metrics, self.health)
        )
        self.console = Console(
            config,
            self.open_store,
            credentials=self.credentials,
            gate=write_gate,
            failures=self._failures,
        )
        self.scheduler_running = False
        self.pool: ProcessPoolExecutor | None = None

    def open_store(self) -> Store:
        return Store(self.config.store.path)

    def app(self) -> Starlette:
        routes = [
            Route("/v1/ingest", self.ingest, methods=["POST"]),
            Route("/v1/snapshot", self.snapshot, methods=["GET"]),
            Route("/v1/signals", self.signals, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics_text, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/v1/shard", self.shard, methods=["POST"]),
            *self.console.routes(),
        ]
        allowed = allowed_names(self.config.server.host, self.config.server.names)
        return Starlette(
            routes=routes,
            middleware=[Middleware(RequireHost, allowed=allowed)],
            lifespan=self.lifespan,
            exception_handlers={sqlite3.Error: self._store_failed, StoreError: self._store_failed},
        )

    async def _store_failed(self, _request: Request, exc: Exception) -> Response:
        """A read that failed in the store: 503 naming the cause (no traceback), and
        `/healthz` reports it until a read succeeds again."""
        failure = self.health.failed("read", exc)
        log.error("a request failed in the store: %s", failure.reason)
        return _error(503, failure.reason)

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.pool = self._new_pool()
        # Start every worker now, not on the first posts (a spawn costs ~1 s).
        started = [self.pool.submit(worker_ready, 0.2) for _ in range(parse_workers())]
        await asyncio.gather(*(asyncio.wrap_future(f) for f in started))
        self.writer.start()
        if self.stream is not None:
            self.stream.start()
        if self.check_in_background:
            threading.Thread(target=self._check_store, name="rarenet-check", daemon=True).start()
        scheduler = self.jobs.build_scheduler()
        scheduler.start()
        self.scheduler_running = True
        if self.on_ready is not None:
            self.on_ready()
        try:
            yield
        finally:
            # In-flight requests have finished (uvicorn waits for them before this):
            # stop the jobs (waiting for a running one), then commit what is queued.
            self.scheduler_running = False
            await run_in_threadpool(scheduler.shutdown, True)
            await run_in_threadpool(self.jobs.close)
            if self.stream is not None:  # its batch in hand is committed, then acked
                await run_in_threadpool(self.stream.stop)
            await run_in_threadpool(self.writer.close)
            await run_in_threadpool(self.pool.shutdown, True)  # the current pool

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: this process already runs threads (writer, scheduler)
        return ProcessPoolExecutor(
            parse_workers(),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.config, os.getpid()),
        )

    def _authorised(self, request: Request, purpose: Purpose) -> bool:
        return self.console.keeper.machine_ok(request, purpose)

    # -- POST /v1/ingest --------------------------------------------------------------------

    async def ingest(self, request: Request) -> Response:
        response = await self._ingest(request)
        self.metrics.requests.labels(str(response.status_code)).inc()
        return response

    async def _ingest(self, request: Request) -> Response:
        if not self._authorised(request, Purpose.INGEST):
            return _error(401, "missing or wrong ingest token (Authorization: Bearer … or ?token=)")
        content_type = request.headers.get("content-type", "").lower()
        if content_type.startswith(REFUSED_TYPES):
            return _error(
                415, f"Content-Type {content_type[:60]!r}: send the JSON or NDJSON itself"
            )
        pool = self.pool
        assert pool is not None
        try:
            raw = await self._read(request)
            encoding = request.headers.get("content-encoding", "")
            packed = await asyncio.wrap_future(pool.submit(parse_in_worker, raw, encoding))
        except BodyError as exc:
            return _error(exc.status, exc.message)
        except ClientDisconnect:
            return _error(400, "the client closed the connection before the body was complete")
        except BrokenProcessPool as exc:  # a worker died: later requests get a fresh pool
            if self.pool is pool and self.scheduler_running:
                self.pool = self._new_pool()
                pool.shutdown(wait=False)
            return _error(503, f"cannot parse now, retry: {exc}")
        except RuntimeError as exc:  # the pool is shutting down
            return _error(503, f"cannot parse now: {exc}")
        parsed = await run_in_threadpool(packed.unpack)  # large bodies: off the event loop
        peer = request.client.host if request.client else "unknown"
        try:
            counts = await asyncio.wrap_future(self.writer.submit(f"http:{peer}", parsed.result))
        except WriterClosed as exc:
            return _error(503, str(exc))
        except Exception as exc:  # recorded by the writer for /healthz
            return _error(503, describe_failure(exc))
        self.metrics.ingested(counts)
        document = {
            "accepted": counts.inserted,
            "duplicates": counts.duplicates,
            "rejected": counts.rejected,
            "quarantined": counts.quarantined,
            "filtered": counts.filtered,
            "skipped": counts.skipped,
            "errors": parsed.errors,
        }
        if parsed.nothing_usable:
            return JSONResponse(
                {"error": "nothing in the body is an osquery result", **document}, status_code=400
            )
        return JSONResponse(document)

    async def _read(self, request: Request) -> bytes:
        """The raw body, at most max_body bytes (else 413). A body somewhat over the limit
        is read to its end and dropped, so the sender sees the 413 rather than a reset
        connection; one over DRAIN_FACTOR × the limit is cut off."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise BodyError(400, "Content-Length is not a number")
            if int(declared) > self.max_body * DRAIN_FACTOR:
                raise BodyError(413, self._too_large(int(declared)))
        pieces: list[bytes] = []
        size = 0
        async for piece in request.stream():
            size += len(piece)
            if size > self.max_body * DRAIN_FACTOR:
                break
            if size <= self.max_body:
                pieces.append(piece)
        if size > self.max_body:
            raise BodyError(413, self._too_large(size))
        return b"".join(pieces)

    def _too_large(self, size: int) -> str:
        return f"body of {size}+ bytes is over the {self.max_body}-byte limit ([ingest] max_body)"

    # -- GET /v1/snapshot -------------------------------------------------------------------

    async def snapshot(self, request: Request) -> Response:
        if not self._authorised(request, Purpose.SNAPSHOT):
            return _error(401, "missing or wrong snapshot token")
        host = request.query_params.get("host")
        if host is not None and not 0 < len(host) <= MAX_HOST:
            return _error(400, f"host must be 1 to {MAX_HOST} characters")
        snap = await run_in_threadpool(self._snapshot, host, request.headers.get("if-none-match"))
        headers = {"ETag": snap.etag, "Cache-Control": "no-cache"}
        if snap.not_modified:
            return Response(status_code=304, headers=headers)
        return Response(snap.body, media_type="application/json", headers=headers)

    def _snapshot(self, host: str | None, if_none_match: str | None) -> Snapshot:
        with self.open_store() as store:
            snap = self.snapshots.get(store, host, if_none_match)
        self.health.succeeded("read")
        return snap

    # -- GET /v1/signals --------------------------------------------------------------------

    async def signals(self, request: Request) -> Response:
        found = await self.console.identify(request)
        if found.refused is not None:
            return _error(*found.refused)
        if found.who is None:
            return _error(401, "sign in, or send a personal API token (rarenet tokens add)")
        query = request.query_params
        try:
            limit = int(query.get("limit", "100"))
            if not 1 <= limit <= MAX_SIGNALS:
                raise ValueError
        except ValueError:
            return _error(400, f"limit must be an integer from 1 to {MAX_SIGNALS}")
        since: int | None = None
        if query.get("since"):
            try:
                since = parse_time(query["since"])
                if not 0 <= since <= MAX_TIME:
                    raise ValueError
            except (ValueError, OverflowError):
                return _error(400, "since must be unix seconds or ISO 8601 (year 1970 to 9999)")
        state = query.get("state") or None
        if state is not None and len(state) > 32:
            return _error(400, "state is too long")
        try:
            documents = await run_in_threadpool(self._signals, limit, since, state)
        except InputError as exc:
            return _error(400, str(exc))
        return JSONResponse({"signals": documents})

    def _signals(self, limit: int, since: int | None, state: str | None) -> list[Any]:
        with self.open_store() as store:
            records = list_signals(store, limit=limit, since=since, state=state)
        self.health.succeeded("read")
        return [record.as_json() for record in records]

    # -- POST /v1/shard (a detection node asks this shard; baseline/detect/remote.py) ------

    async def shard(self, request: Request) -> Response:
        if self.config.detect.role != "shard":
            return _error(404, 'this server is not a shard ([detect] role = "shard")')
        if not self._authorised(request, Purpose.SHARD):
            return _error(401, "missing or wrong shard token ([detect] shard_token)")
        pieces, size = [], 0
        async for piece in request.stream():
            size += len(piece)
            if size > SHARD_MAX_BODY:
                return _error(413, f"a shard query is limited to {SHARD_MAX_BODY} bytes")
            pieces.append(piece)
        try:  # parsed and checked off the event loop: /healthz and ingest go on meanwhile
            op, args = await run_in_threadpool(self._shard_request, b"".join(pieces))
        except BadArgument as exc:
            return _error(400, str(exc))
        if self.shard_slots.locked():  # a node asks one question at a time: more is abuse
            return _error(503, f"this shard answers {SHARD_AT_ONCE} questions at a time")
        async with self.shard_slots:
            try:
                result = await run_in_threadpool(self._shard, op, args)
            except TookTooLong as exc:
                return _error(503, f"{op} {exc} ([detect] shard_timeout); nothing was changed")
        return JSONResponse({"result": result})

    def _shard_request(self, body: bytes) -> tuple[str, dict[str, Any]]:
        """The op and its checked arguments (baseline/serve/shard_args.py)."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("op"), str):
            raise BadArgument(f'body must be {{"op": one of {sorted(SHARD_OPS)}, "args": {{}}}}')
        detect = self.config.detect
        span, history = max(1, int(detect.bucket_span)), int(detect.history)
        op = parsed["op"]
        try:
            return op, checked(op, parsed.get("args"), span, history)
        except BadArgument as exc:
            raise BadArgument(f"{op}: {exc}") from None

    def _shard(self, op: str, args: dict[str, Any]) -> Any:
        """Answer one question within `[detect] shard_timeout` (TookTooLong past it: the
        statement running is stopped and any write rolled back)."""
        with self.open_store() as store, deadline(store.conn, self.config.detect.shard_timeout):
            source = LocalSource(store, "this shard")
            if op == "refresh":  # a write: takes turns with ingest commits
                with self.write_gate:
                    return source.refresh(**args)
            return getattr(source, op)(**args)

    # -- operations -------------------------------------------------------------------------

    async def healthz(self, _request: Request) -> Response:
        """200 while the server can take data: the writer and scheduler run and no part
        of the store is failing (each failure named, with its reason and age). A failed
        write is probed again here, so a disk that has room again reports healthy at once."""
        failures = self.health.failures()
        if any(f.part == "write" for f in failures):
            await run_in_threadpool(self._probe_write)
            failures = self.health.failures()
        alive = self.writer.alive and self.scheduler_running and not failures
        document = {
            "status": "ok" if alive else "failing",
            "version": __version__,
            "writer": self.writer.alive,
            "scheduler": self.scheduler_running,
            "store": "ok" if not failures else failures[0].reason,
            "failures": self._failures(),
        }
        return JSONResponse(document, status_code=200 if alive else 503)

    def _failures(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {"part": f.part, "reason": f.reason, "seconds_ago": round(now - f.at, 1)}
            for f in self.health.failures()
        ]

    def _check_store(self) -> None:
        """The whole-file `quick_check` of a large store, after start-up: corruption it
        finds is a standing `/healthz` failure (part `check`) until a restart."""
        log.info("checking the whole store in the background (PRAGMA quick_check)")
        started = time.monotonic()
        try:
            with self.open_store() as store:
                problems = store.check()
        except (sqlite3.Error, StoreError) as exc:
            problems = [str(exc)]
        if problems:
            failure = self.health.failed(
                "check", sqlite3.DatabaseError(f"corrupt: {check_summary(problems)}")
            )
            log.error("store check: %s", failure.reason)
        else:
            log.info("store check: ok (%.0f s)", time.monotonic() - started)

    def _probe_write(self) -> None:
        """One small committed write (a health stamp), to see whether writes work again."""
        try:
            with self.open_store() as store, store.transaction() as conn:
                conn.execute(
                    "INSERT INTO store_state (key, value) VALUES ('health_probe', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(time.time()),),
                )
        except (sqlite3.Error, StoreError) as exc:
            self.health.failed("write", exc)
            return
        self.health.succeeded("write")

    async def metrics_text(self, request: Request) -> Response:
        if not self._authorised(request, Purpose.METRICS):
            return _error(401, "missing or wrong metrics token ([server] metrics_tokens)")
        text = await run_in_threadpool(generate_latest, self.metrics.registry)
        return Response(text, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(openapi_document())
