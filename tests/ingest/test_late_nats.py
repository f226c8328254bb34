"""rarenet down for over an hour of data time while an attack happens (issue 29): the
stream keeps every result, `rarenet serve` consumes the backlog when it is back, and the
next run scores the attack's buckets — older than its 45-minute look-back by then — as
late data, in the attack's own bucket, with the lag on the signal. Real nats-server,
real `rarenet serve` processes; `rarenet detect --at` plays the scheduler at data time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from support.late_fleet import ATTACK, GAWK, SPAN, START, VICTIM, fleet
from support.nats_server import (
    Cluster,
    add_stream,
    consumer_state,
    publish,
    stored_count,
    wait_until,
)
from support.serve_process import ServerProcess

from rarenet.baseline.cli import main as cli
from rarenet.baseline.detect.signal import signal_id

pytestmark = pytest.mark.slow
STREAM = "OSQUERY"
DOWN = (ATTACK - 5 * 60, ATTACK + 80 * 60)  # rarenet stopped: the attack ends inside


def messages(low: int, high: int) -> list[tuple[str, bytes]]:
    """The fleet's results with data time in [low, high), as Fleet publishes them."""
    out = []
    for t, host, data in fleet():
        if low <= t < high:
            out.append((f"osquery.result.{host}", data.rstrip(b"\n")))
    return out


def detect(db: Path, at: int) -> dict[str, object]:
    done = CliRunner().invoke(cli, ["--db", str(db), "detect", "--at", str(at), "--json"])
    assert done.exit_code in (0, 1), done.output
    answer: dict[str, object] = orjson.loads(done.stdout)
    return answer


def test_an_attack_while_rarenet_was_down_is_signalled_after_the_restart(tmp_path: Path) -> None:
    before, during = messages(START, DOWN[0]), messages(*DOWN)
    after = messages(DOWN[1], DOWN[1] + SPAN)
    with Cluster(tmp_path) as cluster:
        asyncio.run(add_stream(cluster.urls, STREAM, ["osquery.result.>"]))
        config = (
            f'[nats]\nservers = ["{cluster.urls[0]}"]\nstream = "{STREAM}"\n'
            'subject = "osquery.result.>"\nack_wait = "3s"\nbatch = 250\n\n'
            '[detect]\ninterval = "30d"\n'  # the CLI runs the rule at data time instead
        )
        (tmp_path / "serve").mkdir()
        server = ServerProcess(tmp_path / "serve", extra_toml=config)
        with server:
            asyncio.run(publish(cluster.urls, before))
            wait_until(lambda: stored_count(server.db) == len(before))
            detect(server.db, DOWN[0] // SPAN * SPAN)  # the last run before the stop
            assert server.stop() == 0
        asyncio.run(publish(cluster.urls, during))  # the attack, while rarenet is down
        assert asyncio.run(consumer_state(cluster.urls, STREAM, "rarenet"))[0] == len(during)
        server.start()
        try:
            asyncio.run(publish(cluster.urls, after))
            wait_until(lambda: stored_count(server.db) == len(before) + len(during) + len(after))
            first = (DOWN[1] // SPAN + 1) * SPAN  # the first run after the restart
            answer = detect(server.db, first)
        finally:
            server.stop()
    run = answer["run"]
    assert isinstance(run, dict) and run["window_start"] > ATTACK + 2 * SPAN  # not in its look-back
    signals = answer["signals"]
    assert isinstance(signals, list)
    shell = [d for d in signals if d["process"]["executable"] == GAWK]
    assert [d["id"] for d in shell] == [signal_id(VICTIM, "gawk", GAWK, ATTACK)], signals
    assert shell[0]["arrival"]["lag_seconds"] >= first - (ATTACK + SPAN) - SPAN
    assert run["late"]["host_buckets"] > 0 and run["late"]["behind"] == 0
