"""`[nats]` in `rarenet serve`: the JetStream consumer on its own thread and event loop,
committing through the server's group-commit writer (so it takes turns with HTTP posts
and presence folds) and acking only after that commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from rarenet.baseline.config import Config
from rarenet.baseline.errors import ConfigError, InputError
from rarenet.baseline.ingest.chunks import ChunkResult
from rarenet.baseline.serve.metrics import Metrics
from rarenet.baseline.serve.writer import CommitWriter
from rarenet.baseline.store.health import HealthRecord
from rarenet.baseline.stream.consume import ConsumeSettings, check_settings, consume

log = logging.getLogger("rarenet.serve")
SERVE_CONNECT_TIMEOUT = 10.0  # then the failure is said and Health shows it; retried forever


def settings_of(config: Config) -> ConsumeSettings | None:
    """The consumer `[nats]` asks for, or None when no server is configured."""
    nats = config.nats
    if not nats.servers:
        return None
    settings = ConsumeSettings(
        servers=tuple(nats.servers),
        stream=nats.stream,
        subject=nats.subject,
        durable=nats.durable,
        batch=nats.batch,
        ack_wait=nats.ack_wait,
        connect_timeout=SERVE_CONNECT_TIMEOUT,
    )
    try:
        check_settings(settings)
    except InputError as exc:
        raise ConfigError(
            exc.message, where=f"[nats] {_KEYS.get(exc.where or '', exc.where)}"
        ) from None
    return settings


_KEYS = {"SERVER": "servers", "--stream": "stream", "--durable": "durable", "--batch": "batch",
         "--ack-wait": "ack_wait"}  # fmt: skip


class StreamConsumer:
    """One consumer thread: `start()`, and `stop()` finishes the batch in hand."""

    RETRY = 5.0  # seconds before reconnecting after the consumer failed

    def __init__(
        self,
        settings: ConsumeSettings,
        config: Config,
        writer: CommitWriter,
        metrics: Metrics,
        health: HealthRecord | None = None,
    ) -> None:
        self.settings = settings
        self.health = health
        self.config = config
        self.writer = writer
        self.metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rarenet-nats", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _commit(self, source: str, result: ChunkResult) -> None:
        counts = self.writer.submit(source, result).result()
        self.metrics.ingested(counts, "stream")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        servers = ", ".join(self.settings.servers)
        log.info("consuming JetStream stream %s from %s", self.settings.stream, servers)
        said = None  # the failure last logged: a line per change, not per retry
        while not self._stopping.is_set():
            try:
                report = await consume(
                    self.settings,
                    self.config,
                    stop=self._stop,
                    commit=self._commit,
                    on_state=self._state,
                )
                log.info(
                    "JetStream consumer stopped: %d messages, %d observations stored",
                    report.messages,
                    report.inserted,
                )
            except Exception as exc:  # connection refused, stream missing, writer closed …
                why = str(exc)
                self._state(why)
                if why != said:
                    log.error(
                        "JetStream consumer failed, retrying every %.0f s: %s", self.RETRY, why
                    )
                    said = why
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.RETRY)

    def _state(self, problem: str | None) -> None:
        """The stream source's health: a failing part while it cannot be read."""
        if self.health is None:
            return
        if problem is None:
            self.health.succeeded("stream")
        else:
            servers = ", ".join(self.settings.servers)
            self.health.problem(
                "stream", f"NATS {servers}, stream {self.settings.stream}: {problem}"
            )
