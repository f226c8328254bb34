"""Signal delivery against real HTTP receivers on loopback (no mocks): success, retries,
timeouts, Retry-After, permanent failures, outages, dead-lettering, two webhooks with one
dead, signing, headers, the enqueue policy and the outbox queries."""

from __future__ import annotations

import email.utils
import threading
import time
from dataclasses import replace
from typing import Any

import orjson
import pytest
from support.deliver_helpers import add_signal, add_signals, states, with_webhooks
from support.deliver_receiver import Reply, Seen, receiving, refused_port, statuses

from rarenet.baseline.config import Config
from rarenet.baseline.deliver import deliver_once, get_signal, list_signals, redeliver
from rarenet.baseline.deliver.formats import render
from rarenet.baseline.deliver.job import BACKOFF_BASE, backoff
from rarenet.baseline.deliver.outbox import FIRST_SIGHT_BACKFILL
from rarenet.baseline.deliver.signing import verify
from rarenet.baseline.deliver.webhooks import configured_webhooks, default_name, redact_url
from rarenet.baseline.errors import ConfigError, InputError
from rarenet.baseline.store import Store

T = 1_800_000_000.0  # the tests' clock: deliver_once(now=…) steps it, nothing sleeps


def hook(url: str, **settings: object) -> dict[str, object]:
    return {"url": url, "name": "ops", "timeout": 2.0, **settings}


def row(store: Store, sid: str, webhook: str = "ops") -> dict[str, object]:
    cursor = store.conn.execute(
        "SELECT * FROM deliveries WHERE signal_id = ? AND webhook = ?", (sid, webhook)
    )
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def run_until_settled(store: Store, config: Config, start: float, rounds: int = 30) -> float:
    """Call deliver_once, each time at the earliest next attempt, until nothing is open."""
    now = start
    for _ in range(rounds):
        deliver_once(store, config, now=now)
        due = store.conn.execute(
            "SELECT min(next_attempt_at) FROM deliveries WHERE state IN ('pending', 'retrying')"
        ).fetchone()[0]
        if due is None:
            return now
        now = max(now, float(due))
    raise AssertionError("deliveries did not settle")


def test_success_with_headers_signature_and_state(empty_store: Store, config: Config) -> None:
    ids = add_signals(empty_store, 3, created_at=T - 10)
    with receiving() as receiver:
        cfg = with_webhooks(
            config, hook(receiver.url, secret="k3y", headers=["Authorization: Bearer abc"])
        )
        report = deliver_once(empty_store, cfg, now=T)
        assert report.as_json() == {
            "attempted": 3,
            "delivered": 3,
            "retrying": 0,
            "failed": 0,
            "dead": 0,
        }
        assert sorted(receiver.received_keys()) == sorted(ids)
        for seen in receiver.requests:
            record = get_signal(empty_store, seen.key)
            assert seen.body == render("json", record)
            assert seen.path == "/hook?token=s3cr3t-token"
            assert seen.headers["content-type"] == "application/json"
            assert seen.headers["authorization"] == "Bearer abc"
            assert seen.headers["x-rarenet-attempt"] == "1"
            assert verify("k3y", seen.body, seen.headers["x-rarenet-signature"])
            assert not verify("another", seen.body, seen.headers["x-rarenet-signature"])
            assert not verify("k3y", seen.body + b" ", seen.headers["x-rarenet-signature"])
        for sid in ids:
            assert row(empty_store, sid) | {"queued_at": None} == row(empty_store, sid) | {
                "state": "delivered",
                "attempts": 1,
                "last_status": 200,
                "last_error": None,
                "delivered_at": T,
                "first_attempt_at": T,
                "queued_at": None,
            }
        assert deliver_once(empty_store, cfg, now=T + 60).attempted == 0  # once, not again


def test_no_secret_no_signature_header(empty_store: Store, config: Config) -> None:
    add_signal(empty_store, T)
    with receiving() as receiver:
        deliver_once(empty_store, with_webhooks(config, hook(receiver.url)), now=T)
    assert "x-rarenet-signature" not in receiver.requests[0].headers


def test_delivered_signals_link_to_the_console_and_fleet(
    empty_store: Store, config: Config
) -> None:
    """`[server] public_url` / `fleet_url` reach the receiver in the delivered body."""
    sid = add_signal(empty_store, T)
    server = replace(
        config.server,
        public_url="https://rarenet.example.com",
        fleet_url="https://fleet.example.com",
    )
    with receiving() as receiver:
        deliver_once(
            empty_store, with_webhooks(replace(config, server=server), hook(receiver.url)), now=T
        )
    links = orjson.loads(receiver.requests[0].body)["links"]
    assert links["signal"] == f"https://rarenet.example.com/signals/{sid}"
    assert links["fleet_host"].startswith("https://fleet.example.com/hosts/manage?query=")


def test_500s_then_success_backs_off_exponentially(empty_store: Store, config: Config) -> None:
    sid = add_signal(empty_store, T)
    with receiving(statuses(500, 502, 500)) as receiver:
        cfg = with_webhooks(config, hook(receiver.url))
        now, waits = T, []
        for attempt in range(1, 5):
            report = deliver_once(empty_store, cfg, now=now)
            assert report.attempted == 1
            state = row(empty_store, sid)
            if attempt < 4:
                assert state["state"] == "retrying" and state["attempts"] == attempt
                assert str(state["last_error"]).startswith("HTTP 5")
                waits.append(float(state["next_attempt_at"]) - now)  # type: ignore[arg-type]
                assert deliver_once(empty_store, cfg, now=now + waits[-1] - 0.01).attempted == 0
                now += waits[-1]
        assert (
            row(empty_store, sid)["state"] == "delivered" and row(empty_store, sid)["attempts"] == 4
        )
    for attempt, wait in enumerate(waits, start=1):
        step = BACKOFF_BASE * 2 ** (attempt - 1)
        assert step / 2 <= wait <= step
    assert receiver.received_keys() == [sid] * 4
    assert len({r.body for r in receiver.requests}) == 1
    assert [r.headers["x-rarenet-attempt"] for r in receiver.requests] == ["1", "2", "3", "4"]


def test_backoff_is_capped_and_jittered() -> None:
    waits = [backoff(40, 900.0) for _ in range(200)]
    assert all(450 <= w <= 900 for w in waits) and len(set(waits)) > 100


def test_a_timeout_is_retried_with_the_same_key(empty_store: Store, config: Config) -> None:
    sid = add_signal(empty_store, T)
    script = lambda n, _s: Reply(delay=3.0 if n == 0 else 0.0)  # noqa: E731
    with receiving(script) as receiver:
        cfg = with_webhooks(config, hook(receiver.url, timeout=0.3))
        started = time.monotonic()
        assert deliver_once(empty_store, cfg, now=T).retrying == 1
        assert time.monotonic() - started < 2.5
        state = row(empty_store, sid)
        assert (
            state["last_status"] is None
            and state["last_error"] == "no complete response within 0.3s"
        )
        run_until_settled(empty_store, cfg, T)
    assert receiver.received_keys() == [sid, sid]
    assert row(empty_store, sid)["state"] == "delivered"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured_and_holds_the_webhook(
    empty_store: Store, config: Config, status: int
) -> None:
    ids = add_signals(empty_store, 3, created_at=T)
    with receiving(statuses(status, headers={"Retry-After": "120"})) as receiver:
        cfg = with_webhooks(config, hook(receiver.url))
        report = deliver_once(empty_store, cfg, now=T)
        assert (report.attempted, report.retrying) == (1, 1)  # throttled: stop for now
        first = receiver.received_keys()[0]
        assert row(empty_store, first)["next_attempt_at"] == T + 120
        assert row(empty_store, first)["last_status"] == status
        assert all(row(empty_store, sid)["next_attempt_at"] == T + 120 for sid in ids)
        assert deliver_once(empty_store, cfg, now=T + 119).attempted == 0
        assert deliver_once(empty_store, cfg, now=T + 120).delivered == 3
    assert (
        sorted(set(receiver.received_keys())) == sorted(ids) and len(receiver.received_keys()) == 4
    )


def test_retry_after_http_date(empty_store: Store, config: Config) -> None:
    sid = add_signal(empty_store, T)
    date = email.utils.formatdate(time.time() + 600, usegmt=True)
    with receiving(statuses(503, headers={"Retry-After": date})) as receiver:
        deliver_once(empty_store, with_webhooks(config, hook(receiver.url)), now=T)
    wait = float(row(empty_store, sid)["next_attempt_at"]) - T  # type: ignore[arg-type]
    assert 590 <= wait <= 601


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 301])
def test_other_4xx_are_permanent_failures(empty_store: Store, config: Config, status: int) -> None:
    bad = add_signal(empty_store, T, host="bad")
    add_signal(empty_store, T, host="good")

    def script(_n: int, seen: Seen) -> Reply:
        if seen.key == bad:
            return Reply(status, body=b"invalid payload\n<script>\x00" + b"x" * 2000)
        return Reply(200)

    with receiving(script) as receiver:
        cfg = with_webhooks(config, hook(receiver.url))
        report = deliver_once(empty_store, cfg, now=T)
        assert (report.failed, report.delivered) == (1, 1)
        state = row(empty_store, bad)
        assert state["state"] == "failed" and state["last_status"] == status
        error = str(state["last_error"])
        assert error.startswith(f"HTTP {status}") and len(error) <= 320
        assert "\x00" not in error and "\n" not in error
        if status < 400:
            assert "redirect" in error
        else:
            assert "invalid payload" in error
        assert deliver_once(empty_store, cfg, now=T + 86400).attempted == 0  # never retried
        assert receiver.received_keys().count(bad) == 1
        # An admin fixes the receiver, then redelivers: same key, delivered.
        redeliver(empty_store, bad, ["ops"], now=T + 100)
        assert row(empty_store, bad)["state"] == "pending"
        receiver.script = lambda _n, _s: Reply(200)
        assert deliver_once(empty_store, cfg, now=T + 100).delivered == 1
    assert receiver.received_keys().count(bad) == 2


@pytest.mark.parametrize("status", [408, 425, 500, 502, 504])
def test_retryable_statuses(empty_store: Store, config: Config, status: int) -> None:
    sid = add_signal(empty_store, T)
    with receiving(statuses(status)) as receiver:
        deliver_once(empty_store, with_webhooks(config, hook(receiver.url)), now=T)
    assert row(empty_store, sid)["state"] == "retrying"


def test_receiver_down_for_a_while_then_back(empty_store: Store, config: Config) -> None:
    ids = add_signals(empty_store, 5, created_at=T)
    port = refused_port()
    url = f"http://127.0.0.1:{port}/hook?token=s3cr3t-token"
    cfg = with_webhooks(config, hook(url))
    now = T
    for _ in range(6):  # down: one connection attempt per back-off step, not per signal
        report = deliver_once(empty_store, cfg, now=now)
        assert (report.attempted, report.retrying) == (1, 1)
        assert deliver_once(empty_store, cfg, now=now).attempted == 0  # held until the next step
        now = min(float(row(empty_store, sid)["next_attempt_at"]) for sid in ids)  # type: ignore[arg-type]
    errors = {str(row(empty_store, sid)["last_error"]) for sid in ids} - {"None"}
    assert errors == {"ConnectionError: Connection refused"}
    with receiving(port=port) as receiver:
        run_until_settled(empty_store, cfg, now)
    assert sorted(receiver.received_keys()) == sorted(ids)  # every signal, each once
    assert set(states(empty_store).values()) == {"delivered"}
    for sid in ids:
        assert "s3cr3t" not in str(row(empty_store, sid))


def test_dead_letter_after_the_configured_age_keeps_the_last_error(
    empty_store: Store, config: Config
) -> None:
    ids = add_signals(empty_store, 3, created_at=T)
    cfg = with_webhooks(
        config, hook(f"http://127.0.0.1:{refused_port()}/x", dead_letter_after=600.0)
    )
    now = T
    while now < T + 600:
        deliver_once(empty_store, cfg, now=now)
        now = min(
            T + 600,
            min(float(row(empty_store, sid)["next_attempt_at"]) for sid in ids),  # type: ignore[arg-type]
        )
    report = deliver_once(empty_store, cfg, now=T + 600)
    assert report.dead == 3 and report.attempted == 0
    for sid in ids:
        state = row(empty_store, sid)
        assert state["state"] == "dead"
        assert state["last_error"] in (
            "ConnectionError: Connection refused",
            "never attempted: the webhook was backing off",
        )
    assert any(row(empty_store, sid)["attempts"] for sid in ids)
    assert deliver_once(empty_store, cfg, now=T + 10_000).attempted == 0
    assert len(list_signals(empty_store, state="dead")) == 3  # kept, never deleted


@pytest.mark.parametrize("dead", ["hangs", "refuses"])
def test_two_webhooks_one_dead_the_live_one_gets_everything_at_once(
    empty_store: Store, config: Config, dead: str
) -> None:
    ids = add_signals(empty_store, 20, created_at=T)
    with receiving() as live, receiving(lambda _n, _s: Reply(delay=30)) as hanging:
        dead_url = hanging.url if dead == "hangs" else f"http://127.0.0.1:{refused_port()}/"
        cfg = with_webhooks(
            config,
            {"url": dead_url, "name": "dead", "timeout": 1.5},
            {"url": live.url, "name": "live", "timeout": 1.5},
        )
        started = time.monotonic()
        report = deliver_once(empty_store, cfg, now=T)
        elapsed = time.monotonic() - started
        assert sorted(live.received_keys()) == sorted(ids)
        assert (report.delivered, report.retrying) == (20, 1)
        if dead == "hangs":
            # the live receiver had everything before the dead one's first timeout ended
            assert max(r.at for r in live.requests) < hanging.requests[0].at + 1.5
            assert len(hanging.requests) == 1
        assert elapsed < 4
        assert set(states(empty_store, "live").values()) == {"delivered"}
        dead_states = list(states(empty_store, "dead").values())
        assert dead_states.count("retrying") == 1 and dead_states.count("pending") == 19
        held = empty_store.conn.execute(
            "SELECT min(next_attempt_at) FROM deliveries WHERE webhook = 'dead'"
        ).fetchone()[0]
        assert held >= T + 1  # the untried rows wait for the failed one's back-off
        # the next pass does not wait for the dead webhook again (it is backing off)
        started = time.monotonic()
        assert deliver_once(empty_store, cfg, now=T + 0.5).attempted == 0
        assert time.monotonic() - started < 0.5


def test_a_webhook_added_later_gets_new_signals_not_history(
    empty_store: Store, config: Config
) -> None:
    old = add_signal(empty_store, T - FIRST_SIGHT_BACKFILL - 1, host="old")
    recent = add_signal(empty_store, T - 60, host="recent")
    with receiving() as receiver:
        cfg = with_webhooks(config, hook(receiver.url))
        deliver_once(empty_store, cfg, now=T)
        later = add_signal(empty_store, T + 30, host="later")
        deliver_once(empty_store, cfg, now=T + 31)
        assert sorted(receiver.received_keys()) == sorted([recent, later])
        assert get_signal(empty_store, old).deliveries == ()
        assert redeliver(empty_store, old, ["ops"], now=T + 40, only="ops") == ["ops"]
        deliver_once(empty_store, cfg, now=T + 40)
        assert receiver.received_keys().count(old) == 1


def test_redeliver_needs_a_configured_webhook(empty_store: Store) -> None:
    sid = add_signal(empty_store, T)
    with pytest.raises(InputError, match="no configured webhook is named 'nope'"):
        redeliver(empty_store, sid, ["ops"], now=T, only="nope")
    with pytest.raises(InputError, match="no webhook is configured"):
        redeliver(empty_store, sid, [], now=T)


def test_webhook_settings_are_validated(config: Config) -> None:
    url = "https://hooks.slack.example/services/T000/B000/XXXSECRET"
    name = default_name(url)
    assert name.startswith("hooks.slack.example-") and "XXX" not in name
    assert redact_url(url) == "https://hooks.slack.example/…"
    assert configured_webhooks(with_webhooks(config, {"url": url}))[0].name == name
    bad: list[tuple[dict[str, Any], str]] = [
        ({"url": url, "headers": ["no colon"]}, "header #1 is not 'Name: value'"),
        ({"url": url, "headers": ["Idempotency-Key: x"]}, "set by rarenet itself"),
        ({"url": url, "headers": ["X-A: b\r\nX-B: c"]}, "control character"),
        ({"url": "ftp://x/y"}, "is not an http"),
        ({"url": url, "name": "has space"}, "webhook name"),
    ]
    for settings, message in bad:
        with pytest.raises(ConfigError, match=message) as caught:
            configured_webhooks(with_webhooks(config, settings))
        assert "XXXSECRET" not in str(caught.value)
    with pytest.raises(ConfigError, match="two webhooks are named"):
        configured_webhooks(with_webhooks(config, {"url": url}, {"url": url}))


def test_webhooks_from_rarenet_toml(tmp_path: object) -> None:
    from pathlib import Path

    from rarenet.baseline.config import load_config

    toml = Path(str(tmp_path)) / "rarenet.toml"
    toml.write_text(
        '[[webhooks]]\nurl = "http://127.0.0.1:9/a"\nname = "siem"\nformat = "ecs"\n'
        'headers = ["Authorization: Bearer t"]\ndead_letter_after = "2h"\nmax_backoff = "5m"\n'
    )
    (hook_,) = configured_webhooks(load_config(str(toml), env={}))
    assert (hook_.name, hook_.format, hook_.dead_letter_after, hook_.max_backoff) == (
        "siem",
        "ecs",
        7200.0,
        300.0,
    )
    assert hook_.headers == (("Authorization", "Bearer t"),)


def test_list_signals_newest_first_with_filters(empty_store: Store, config: Config) -> None:
    a = add_signal(empty_store, T - 100, host="a")
    b = add_signal(empty_store, T - 50, host="b")
    assert [r.id for r in list_signals(empty_store)] == [b, a]
    assert [r.id for r in list_signals(empty_store, since=T - 60)] == [b]
    assert [r.id for r in list_signals(empty_store, state="none")] == [b, a]
    with receiving(lambda _n, s: Reply(400 if s.key == a else 200)) as receiver:
        deliver_once(empty_store, with_webhooks(config, hook(receiver.url)), now=T)
    assert [r.id for r in list_signals(empty_store, state="failed")] == [a]
    record = list_signals(empty_store, state="delivered")[0]
    doc = record.as_json()
    assert doc["state"] == "delivered" and doc["deliveries"][0]["webhook"] == "ops"
    assert doc["document"]["id"] == b
    assert get_signal(empty_store, b[:8]).id == b
    with pytest.raises(InputError, match="no signal with id"):
        get_signal(empty_store, "0" * 32)
    with pytest.raises(InputError, match="unknown state"):
        list_signals(empty_store, state="lost")


def test_no_webhooks_configured_is_a_no_op(empty_store: Store, config: Config) -> None:
    add_signal(empty_store, T)
    assert deliver_once(empty_store, config, now=T).attempted == 0


def test_a_hanging_webhook_never_holds_the_store(empty_store: Store, config: Config) -> None:
    """While a pass waits on a slow receiver, the detector (another connection) commits."""
    add_signal(empty_store, T)
    with receiving(lambda _n, _s: Reply(delay=30)) as hanging:
        cfg = with_webhooks(config, hook(hanging.url, timeout=2.0))

        def one_pass() -> None:
            with Store(empty_store.path) as own:
                deliver_once(own, cfg, now=T)

        passing = threading.Thread(target=one_pass)
        passing.start()
        deadline = time.monotonic() + 5
        while not hanging.requests:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        add_signal(empty_store, T + 1, host="meanwhile")  # the detector's write transaction
        assert time.monotonic() - started < 0.5
        passing.join(10)
    assert not passing.is_alive()
    assert row(empty_store, hanging.received_keys()[0])["state"] == "retrying"
