"""`deliver_once`: one delivery pass — queue, dead-letter, send what is due, record.

The scheduler calls it every few seconds; tests call it with an explicit `now`. Each
webhook is served by its own thread, sending its due rows one at a time, so a slow or
dead webhook never delays another; every result is committed by the calling thread as
soon as it arrives. Work per call is bounded: at most `BATCH` rows and `BUDGET` seconds
(plus one timeout: each attempt's whole request is bounded by it, `deadline.py`) per
webhook. `rarenet serve` runs one pass per webhook on its own schedule (`only=`), so a
webhook that is slow to answer never delays another's next pass. When a webhook is down
(connection failure, timeout) or throttling (429/503), its thread stops for this call and
all its open rows wait for the failed row's next attempt, so a dead webhook costs one
timeout per back-off step, not one per signal.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from rarenet.baseline.config import Config
from rarenet.baseline.deliver import outbox
from rarenet.baseline.deliver.deadline import deadline_session
from rarenet.baseline.deliver.formats import render
from rarenet.baseline.deliver.links import NO_LINKS, Links
from rarenet.baseline.deliver.sender import DELIVERED, PERMANENT, Outcome, post
from rarenet.baseline.deliver.webhooks import Webhook, configured_webhooks
from rarenet.baseline.store import Store

log = logging.getLogger("rarenet.deliver")

BATCH = 100  # rows per webhook per call
BUDGET = 20.0  # seconds per webhook per call before no new request is started
BACKOFF_BASE = 2.0  # seconds before the second attempt; doubles per attempt
RETRY_AFTER_CAP = 86400.0  # a Retry-After longer than this is read as this


@dataclass(frozen=True)
class DeliveryReport:
    """What one pass did."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    dead: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
            "dead": self.dead,
        }


def backoff(attempts: int, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failures: base 2 s doubling, capped,
    with "equal jitter" (uniformly between half and all of the exponential step)."""
    step = min(cap, BACKOFF_BASE * 2.0 ** max(0, min(attempts - 1, 30)))
    return step / 2 + (rng or random).uniform(0, step / 2)


def next_attempt(outcome: Outcome, attempts: int, webhook: Webhook, now: float) -> float:
    """When to try again: `Retry-After` when the receiver gave one, else back-off."""
    if outcome.retry_after is not None:
        return now + min(max(outcome.retry_after, 0.0), RETRY_AFTER_CAP)
    return now + backoff(attempts, webhook.max_backoff)


@dataclass(frozen=True)
class _Result:
    webhook: Webhook
    due: outbox.Due
    outcome: Outcome


def _serve(
    webhook: Webhook,
    rows: list[outbox.Due],
    results: queue.Queue[_Result | None],
    links: Links = NO_LINKS,
) -> None:
    """One webhook's thread: send its rows in order until done, down, or out of budget."""
    started = time.monotonic()
    try:
        with deadline_session() as session:
            for row in rows:
                if time.monotonic() - started > BUDGET:
                    break
                try:
                    body = render(webhook.format, row.signal, links)
                except Exception as exc:  # a defect: fail this row visibly, keep going
                    outcome = Outcome(PERMANENT, None, f"cannot render: {type(exc).__name__}")
                else:
                    outcome = post(session, webhook, row.signal.id, body, row.attempts + 1)
                results.put(_Result(webhook, row, outcome))
                if outcome.webhook_down:
                    break
    finally:
        results.put(None)


def deliver_once(
    store: Store, config: Config, *, now: float | None = None, only: str | None = None
) -> DeliveryReport:
    """One pass over every configured webhook, or the one named `only` (see the module
    docstring)."""
    clock = time.time() if now is None else float(now)
    webhooks = [w for w in configured_webhooks(config) if only is None or w.name == only]
    if not webhooks:
        return DeliveryReport()
    outbox.enqueue(store, [w.name for w in webhooks], clock)
    dead = 0
    for webhook in webhooks:
        expired = outbox.expire(store, webhook.name, webhook.dead_letter_after, clock)
        if expired:
            log.warning("webhook %s: %d deliveries dead-lettered", webhook.name, expired)
        dead += expired
    work = [(w, outbox.due(store, w.name, clock, BATCH)) for w in webhooks]
    work = [(w, rows) for w, rows in work if rows]
    results: queue.Queue[_Result | None] = queue.Queue()
    threads = [
        threading.Thread(
            target=_serve,
            args=(w, rows, results, Links.from_config(config)),
            name=f"deliver-{w.name}",
            daemon=True,
        )
        for w, rows in work
    ]
    for thread in threads:
        thread.start()
    counts = {"attempted": 0, "delivered": 0, "retrying": 0, "failed": 0}
    running = len(threads)
    while running:
        result = results.get()
        if result is None:
            running -= 1
            continue
        state = _record(store, result, clock if now is not None else time.time())
        counts["attempted"] += 1
        counts[state] += 1
    for thread in threads:
        thread.join()
    return DeliveryReport(dead=dead, **counts)


def _record(store: Store, result: _Result, now: float) -> str:
    """Commit one attempt's outcome; returns the report bucket it falls in."""
    webhook, sid, outcome = result.webhook, result.due.signal.id, result.outcome
    attempts = result.due.attempts + 1
    when = 0.0
    if outcome.kind == DELIVERED:
        state, bucket = outbox.DELIVERED, "delivered"
    elif outcome.kind == PERMANENT:
        state, bucket = outbox.FAILED, "failed"
        log.warning("webhook %s: signal %s failed: %s", webhook.name, sid, outcome.error)
    else:
        state, bucket = outbox.RETRYING, "retrying"
        when = next_attempt(outcome, attempts, webhook, now)
        log.info(
            "webhook %s: signal %s attempt %d: %s; next in %.0fs",
            *(webhook.name, sid, attempts, outcome.error, when - now),
        )
    outbox.mark_attempt(
        store,
        sid,
        webhook.name,
        state=state,
        now=now,
        status=outcome.status,
        error=outcome.error,
        next_attempt_at=when,
    )
    if outcome.webhook_down:
        outbox.hold(store, webhook.name, when)
    return bucket
