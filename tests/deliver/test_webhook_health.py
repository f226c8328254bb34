"""A failing webhook is loud (issue 30): serve's terminal says when its deliveries start
failing and when it delivers again, and while a delivery has been failing longer than
`alert_after` the webhook is a failing part of Health and `/healthz` answers 503."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from support.deliver_helpers import add_signal
from support.deliver_receiver import Reply, Seen, receiving
from support.serve_process import ServerProcess

from rarenet.baseline.store import Store

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_failing_webhook_turns_health_red_and_says_so_until_it_delivers(
    tmp_path: Path,
) -> None:
    down = {"now": True}

    def script(_n: int, _seen: Seen) -> Reply:
        return Reply(503, body=b"maintenance") if down["now"] else Reply(200)

    with receiving(script) as hook:
        server = ServerProcess(
            tmp_path,
            tokens=(),  # the console reads anonymously on loopback
            extra_toml=(
                f'[[webhooks]]\nname = "siem"\nurl = "{hook.url}"\n'
                'alert_after = "3s"\nmax_backoff = "2s"\n'
            ),
        )
        with server:
            assert server.get("/healthz").status_code == 200
            with Store(server.db) as store:
                add_signal(store, time.time(), host="web-01")
            wait_for(lambda: "webhook siem is failing: HTTP 503" in server.output())
            wait_for(lambda: server.get("/healthz").status_code == 503)
            failing = server.get("/healthz").json()
            (part,) = [f for f in failing["failures"] if f["part"] == "webhook siem"]
            assert "failing for" in part["reason"] and "503" in part["reason"], part
            health = requests.get(f"{server.url}/health", timeout=30).text
            assert "<strong>webhook siem</strong>: 1 delivery(ies) failing for" in health
            down["now"] = False
            wait_for(lambda: "webhook siem delivers again" in server.output())
            wait_for(lambda: server.get("/healthz").status_code == 200)
    assert hook.requests and hook.requests[-1].key
