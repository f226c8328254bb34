"""Each delivery attempt has a whole-request deadline (issue 15): a receiver that
trickles its response one byte at a time is cut off at the webhook's timeout, and never
delays another webhook — in one `deliver_once` pass and in `rarenet serve`."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from support.deliver_helpers import add_signal, add_signals, states, with_webhooks
from support.deliver_receiver import Trickler, receiving
from support.serve_process import ServerProcess

from rarenet.baseline.config import Config
from rarenet.baseline.deliver import deliver_once
from rarenet.baseline.serve.jobs import DELIVER_EVERY
from rarenet.baseline.store import Store

pytestmark = pytest.mark.slow  # real servers and their timeouts: `make test`, not `make check`

T = time.time()


def test_a_trickling_receiver_is_cut_off_at_the_timeout(empty_store: Store, config: Config) -> None:
    ids = add_signals(empty_store, 5, created_at=T)
    with Trickler(every=0.3, limit=40) as slow, receiving() as live:
        cfg = with_webhooks(
            config,
            {"url": slow.url, "name": "slow", "timeout": 1.5},
            {"url": live.url, "name": "live", "timeout": 1.5},
        )
        started = time.monotonic()
        report = deliver_once(empty_store, cfg, now=T)
        elapsed = time.monotonic() - started
        assert sorted(live.received_keys()) == sorted(ids)
        assert len(slow.arrivals) == 1  # down after one attempt: the rest wait
        assert elapsed < 1.5 + 1.5, elapsed  # was: as long as the receiver trickled
        assert (report.delivered, report.retrying) == (5, 1)
        error = empty_store.conn.execute(
            "SELECT last_error FROM deliveries WHERE webhook = 'slow' AND state = 'retrying'"
        ).fetchone()[0]
        assert error == "no complete response within 1.5s"
        assert set(states(empty_store, "live").values()) == {"delivered"}


@pytest.mark.slow
def test_in_serve_a_trickling_webhook_never_delays_a_healthy_one(tmp_path: Path) -> None:
    timeout = 2.0
    with Trickler(every=0.3, limit=120) as slow, receiving() as live:
        server = ServerProcess(
            tmp_path,
            extra_toml=(
                f'[[webhooks]]\nname = "slow"\nurl = "{slow.url}"\ntimeout = "{timeout:g}s"\n\n'
                f'[[webhooks]]\nname = "live"\nurl = "{live.url}"\ntimeout = "{timeout:g}s"\n'
            ),
        )
        server.start()
        try:
            created: dict[str, float] = {}
            with Store(server.db) as store:
                for index in range(4):  # one signal every 2 s, as runs would
                    sid = add_signal(store, time.time(), host=f"web-{index:02d}")
                    created[sid] = time.monotonic()
                    time.sleep(2)
            bound = DELIVER_EVERY + timeout + 1.0  # + scheduling slack
            deadline = time.monotonic() + 60
            while set(live.received_keys()) != set(created) and time.monotonic() < deadline:
                time.sleep(0.2)
            firsts: dict[str, float] = {}
            for seen in live.requests:
                firsts.setdefault(seen.key, seen.at)
            assert set(firsts) == set(created)
            late = {sid: firsts[sid] - created[sid] for sid in created}
            assert max(late.values()) <= bound, late
            assert len(slow.arrivals) >= 1  # the slow one was tried meanwhile
            body = orjson.loads(live.requests[0].body)
            assert body["id"] in created
        finally:
            server.kill()
