"""`rarenet consume`: a JetStream durable pull consumer of osquery result logs.

Fleet's `nats` result-log destination publishes one message per raw osquery log (a JSON
result object). Each fetched batch is parsed like a file chunk, committed to the store in
one transaction (observations and quarantined messages together), and only then acked:

* a consumer killed before its ack gets the batch again — the store's idempotency
  (observations keyed on time + digest, quarantine on source + sequence + digest) makes
  the redelivery store nothing new;
* a message Fleet compressed (`Content-Encoding` gzip, snappy or zstd) is decoded first,
  never past `[ingest] max_body` (baseline/stream/encoding.py);
* a message that is not a result (not JSON, wrong types, over `[ingest] max_body`, not
  decodable) is quarantined with source `nats:<stream>` and its stream sequence as the
  line number, and acked: never an endless redelivery loop;
* memory is bounded by the batch (`--batch` messages, each at most `max_body` bytes), and
  the server holds at most `max_ack_pending` unacknowledged messages for the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from rarenet.baseline.config import Config
from rarenet.baseline.errors import InputError, RarenetError
from rarenet.baseline.ingest.chunks import ChunkResult, build_parser, commit_chunk, parse_lines
from rarenet.baseline.ingest.model import Reject
from rarenet.baseline.store import Store
from rarenet.baseline.stream.encoding import decoded

log = logging.getLogger("rarenet.consume")

Commit = Callable[[str, ChunkResult], object]

DEFAULT_BATCH = 500
ACK_WAIT = 60.0  # seconds the server waits for an ack before redelivering
MAX_ACK_PENDING = 5000
CONNECT_TIMEOUT = 30.0  # seconds to reach a server before giving up (exit 3)


@dataclass(frozen=True)
class ConsumeSettings:
    servers: tuple[str, ...]
    stream: str
    subject: str = ""  # filter subject; empty: everything the stream holds
    durable: str = "rarenet"
    batch: int = DEFAULT_BATCH
    idle_exit: float | None = None  # stop once drained and this long without a message
    ack_wait: float = ACK_WAIT
    max_messages: int | None = None  # stop after this many messages (tests)
    connect_timeout: float = CONNECT_TIMEOUT  # give up connecting after this long


@dataclass
class ConsumeReport:
    messages: int = 0
    batches: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    rejected: int = 0
    seconds: float = 0.0
    last_sequence: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, result: ChunkResult, messages: int, last_sequence: int) -> None:
        counts = result.counts()
        self.messages += messages
        self.batches += 1
        self.inserted += counts.inserted
        self.duplicates += counts.duplicates
        self.rejected += counts.rejected
        self.quarantined += counts.quarantined
        self.last_sequence = max(self.last_sequence, last_sequence)

    def as_json(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "batches": self.batches,
            "observations": self.inserted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "quarantined": self.quarantined,
            "last_sequence": self.last_sequence,
            "seconds": round(self.seconds, 3),
        }


def check_settings(settings: ConsumeSettings) -> None:
    """InputError naming the option that is wrong."""
    if not settings.servers or not all(
        s.startswith(("nats://", "tls://")) for s in settings.servers
    ):
        raise InputError("give the server as nats://HOST:PORT", where="SERVER")
    if not settings.stream or any(c in settings.stream for c in " .*>"):
        raise InputError(f"{settings.stream!r} is not a stream name", where="--stream")
    if not settings.durable or any(c in settings.durable for c in " .*>"):
        raise InputError(f"{settings.durable!r} is not a consumer name", where="--durable")
    if not 0.1 <= settings.ack_wait <= 86400:
        raise InputError("must be from 0.1 s to 1 day", where="--ack-wait")
    if not 1 <= settings.batch <= 100_000:
        raise InputError("must be from 1 to 100000", where="--batch")


async def consume(
    settings: ConsumeSettings,
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    on_batch: Callable[[ConsumeReport], None] | None = None,
    commit: Commit | None = None,
    on_state: Callable[[str | None], None] | None = None,
) -> ConsumeReport:
    """Fetch, commit, ack until `stop` is set (or idle_exit / max_messages is reached).
    `commit(source, result)` stores a parsed batch durably (default: one transaction on
    the configured store; `rarenet serve` passes its group-commit writer). `on_state`
    hears of every change of the connection: a problem in words, None when connected."""
    check_settings(settings)
    stop = stop or asyncio.Event()
    parser = build_parser(config)
    max_line = config.ingest.max_body
    source = f"nats:{settings.stream}"
    report = ConsumeReport()
    started = time.monotonic()
    nc = await connect(settings, stop, on_state)
    if nc is None:  # stopped while connecting
        report.seconds = time.monotonic() - started
        return report
    try:
        js = nc.jetstream()
        subscription = await _subscribe(js, settings)
        idle_since = time.monotonic()
        with contextlib.ExitStack() as stack:
            if commit is None:
                store = stack.enter_context(Store(config.store.path))
                commit = functools.partial(commit_chunk, store)
            while not stop.is_set():
                if settings.max_messages is not None and report.messages >= settings.max_messages:
                    break
                messages = await _fetch(subscription, settings.batch)
                if not messages:
                    idle = time.monotonic() - idle_since
                    if (
                        settings.idle_exit is not None
                        and idle >= settings.idle_exit
                        and await _drained(js, settings)
                    ):
                        break
                    continue
                idle_since = time.monotonic()
                numbered, undecodable = [], []
                last = 0
                for message in messages:
                    sequence = int(message.metadata.sequence.stream)
                    last = max(last, sequence)
                    try:  # Fleet may compress: Content-Encoding gzip, snappy or zstd
                        data = decoded(message.data, _encoding(message), max_line)
                    except ValueError as exc:
                        raw = message.data
                        reason = f"message not decodable: {exc}"
                        undecodable.append(Reject(sequence, reason, raw[:256], len(raw)))
                        continue
                    if len(data) > max_line:
                        numbered.append((sequence, data[:256], len(data)))
                    else:
                        numbered.append((sequence, data, 0))
                result = parse_lines(parser, numbered, max_line)
                result.rejects.extend(undecodable)
                # Commit first (the store keeps everything or nothing of the batch) …
                commit(source, result)  # the loop waits: one consumer, one batch at a time
                # … then ack: a crash (or a lost ack) in between means redelivery after
                # ack_wait, stored as duplicates.
                await _ack(nc, messages)
                report.add(result, len(messages), last)
                if on_batch is not None:
                    on_batch(report)
    finally:
        report.seconds = time.monotonic() - started
        await close(nc)  # acks were flushed after each commit; drain would wait on the fetch
    return report


class ConnectionLog:
    """nats.py's callbacks as one log line per change of state — never a traceback, and
    the same error not again until something else happened (a server that is down is
    retried every half second) — and the state itself for `serve`'s Health."""

    def __init__(self, servers: str, on_state: Callable[[str | None], None] | None = None) -> None:
        self.servers, self.on_state = servers, on_state
        self.last: str | None = "connecting"  # the last state said, None while connected
        self.error_text = ""  # the last error (the root cause of a failed connect)
        self.closing = False  # we are closing the connection ourselves

    def _state(self, problem: str | None) -> None:
        if problem == self.last:
            return
        self.last = problem
        if problem is None:
            log.info("connected to NATS %s", self.servers)
        else:
            log.warning("NATS %s: %s", self.servers, problem)
        if self.on_state is not None:
            self.on_state(problem)

    async def error(self, exc: Exception) -> None:
        self.error_text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._state(self.error_text)

    async def disconnected(self) -> None:
        if not self.closing:
            self._state("disconnected, reconnecting")

    async def connected(self) -> None:
        self._state(None)


async def connect(
    settings: ConsumeSettings,
    stop: asyncio.Event,
    on_state: Callable[[str | None], None] | None = None,
) -> Any:
    """A connection to one of `settings.servers`, retried quietly (one log line per
    change) for up to `connect_timeout` seconds; None when `stop` is set first.
    RarenetError (exit 3) when no server answered in time."""
    servers = ", ".join(settings.servers)
    nc, said = NatsClient(), ConnectionLog(servers, on_state)
    _LOGS[id(nc)] = said
    attempt = asyncio.ensure_future(
        nc.connect(
            servers=list(settings.servers),
            connect_timeout=5,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=said.error,
            disconnected_cb=said.disconnected,
            reconnected_cb=said.connected,
        )
    )
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait(
        {attempt, stopping}, timeout=settings.connect_timeout, return_when=asyncio.FIRST_COMPLETED
    )
    stopping.cancel()
    if attempt in done and attempt.exception() is None:
        await said.connected()
        return nc
    attempt.cancel()
    with contextlib.suppress(BaseException):
        await attempt
    await close(nc)
    if stop.is_set():
        return None
    why = said.error_text or said.last or "no answer"
    raise RarenetError(f"cannot connect to {servers} within {settings.connect_timeout:g} s: {why}")


_LOGS: dict[int, ConnectionLog] = {}  # open connections' logs, by id of the client


async def close(nc: Any) -> None:
    """Close a connection of `connect` without its close being said as a disconnect."""
    said = _LOGS.pop(id(nc), None)
    if said is not None:
        said.closing = True
    with contextlib.suppress(Exception):
        await nc.close()


async def _subscribe(js: Any, settings: ConsumeSettings) -> Any:
    """The durable pull subscription; RarenetError naming a missing stream."""
    try:
        return await js.pull_subscribe(
            settings.subject or ">",
            durable=settings.durable,
            stream=settings.stream,
            config=ConsumerConfig(
                durable_name=settings.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=settings.ack_wait,
                max_ack_pending=MAX_ACK_PENDING,
                filter_subject=settings.subject or None,
            ),
        )
    except NotFoundError:
        raise RarenetError(
            f"stream {settings.stream!r} does not exist on {', '.join(settings.servers)}",
        ) from None
    except (TimeoutError, NatsError) as exc:
        raise RarenetError(f"cannot subscribe to stream {settings.stream!r}: {exc}") from None


def _encoding(message: Any) -> str | None:
    """The message's Content-Encoding header (any case), if any."""
    for key, value in (message.headers or {}).items():
        if key.lower() == "content-encoding":
            return str(value)
    return None


async def _fetch(subscription: Any, batch: int) -> list[Any]:
    """Up to `batch` messages; none on a timeout or while the connection is being
    re-established (a cluster node went away: the client reconnects to another)."""
    try:
        return list(await asyncio.wait_for(subscription.fetch(batch, timeout=1.0), 5.0))
    except (TimeoutError, NatsTimeout):
        return []
    except NatsError as exc:
        log.warning("fetch failed, retrying: %s", exc)
        await asyncio.sleep(0.5)
        return []


async def _ack(nc: Any, messages: list[Any]) -> None:
    """Ack every message of a committed batch; a failure is logged, not fatal (the
    server redelivers after ack_wait and the store drops the duplicates)."""
    try:
        for message in messages:
            await message.ack()
        await asyncio.wait_for(nc.flush(), 10.0)
    except (TimeoutError, NatsError) as exc:
        log.warning("acks of a committed batch may be lost (redelivered later): %s", exc)


async def _drained(js: Any, settings: ConsumeSettings) -> bool:
    """True when the durable has nothing undelivered and nothing awaiting an ack (a
    consumer killed mid-batch leaves messages pending until `ack_wait` redelivers them)."""
    try:
        info = await asyncio.wait_for(js.consumer_info(settings.stream, settings.durable), 5.0)
    except (TimeoutError, NatsError):
        return False
    return not info.num_pending and not info.num_ack_pending


def run_consumer(
    settings: ConsumeSettings,
    config: Config,
    on_batch: Callable[[ConsumeReport], None] | None = None,
) -> ConsumeReport:
    """`consume` on its own event loop; SIGTERM or SIGINT finish the current batch (its
    commit and acks) and stop."""

    async def main() -> ConsumeReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await consume(settings, config, stop=stop, on_batch=on_batch)

    return asyncio.run(main())


def subject_covered(subject: str, patterns: list[str]) -> str | None:
    """The first of a stream's subject `patterns` that `subject` falls under (NATS
    wildcards: `*` one token, `>` the rest), or None: a message published there is not
    kept by the stream (Fleet ignores the negative publish ack: it is lost)."""
    tokens = subject.split(".")
    for pattern in patterns:
        parts = pattern.split(".")
        for n, part in enumerate(parts):
            if part == ">":
                if len(tokens) > n:
                    return pattern
                break
            if n >= len(tokens) or (part != "*" and part != tokens[n]):
                break
        else:
            if len(parts) == len(tokens):
                return pattern
    return None


async def check_stream(settings: ConsumeSettings, subject: str) -> list[str]:
    """What `rarenet consume --check` says: the stream exists, which of its subjects
    covers `subject` (Fleet's result subject, e.g. osquery.result.web-01), how many
    messages it holds and what the durable has left. RarenetError when the stream is
    missing or does not cover the subject."""
    stop = asyncio.Event()
    nc = await connect(settings, stop)
    try:
        js = nc.jetstream()
        try:
            info = await asyncio.wait_for(js.stream_info(settings.stream), 10)
        except NotFoundError:
            raise RarenetError(
                f"stream {settings.stream!r} does not exist on {', '.join(settings.servers)}"
            ) from None
        patterns = list(info.config.subjects or [])
        covering = subject_covered(subject, patterns)
        if covering is None:
            raise RarenetError(
                f"stream {settings.stream!r} (subjects {', '.join(patterns) or 'none'}) does "
                f"not cover {subject!r}: Fleet's messages there are lost (it ignores the "
                "negative publish ack); add the subject to the stream"
            )
        lines = [
            f"stream {settings.stream}: {info.state.messages:,} messages, subjects "
            f"{', '.join(patterns)}",
            f"{subject} is kept by the stream (subject {covering})",
        ]
        with contextlib.suppress(NotFoundError):
            durable = await asyncio.wait_for(
                js.consumer_info(settings.stream, settings.durable), 10
            )
            lines.append(
                f"consumer {settings.durable}: {durable.num_pending:,} not yet read, "
                f"{durable.num_ack_pending:,} read but not acknowledged"
            )
        return lines
    finally:
        await close(nc)
