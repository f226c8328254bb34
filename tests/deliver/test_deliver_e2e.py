"""End to end: osquery lines → ingest → the rule commits a signal → deliver_once sends it
to json, slack and ecs webhooks on loopback; the real rule's document renders in all
three (ECS names and types checked)."""

from __future__ import annotations

from pathlib import Path

import orjson
from support.deliver_helpers import with_webhooks
from support.deliver_receiver import receiving
from support.ecs_fields import check_ecs
from support.osquery_lines import T0, socket_line

from rarenet.baseline.config import Config
from rarenet.baseline.deliver import deliver_once, list_signals
from rarenet.baseline.deliver.signing import verify
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.store import Store

SPAN = 900
START = (T0 // SPAN) * SPAN
HOSTS = [f"web-{i:02d}" for i in range(8)]


def fleet_log(path: Path) -> int:
    """30 buckets of curl on every host, then a beacon from /tmp on web-03."""
    lines = [
        socket_line(
            host,
            START + b * SPAN + i,
            name="curl",
            path="/usr/bin/curl",
            remote_address="203.0.113.80",
        )
        for b in range(30)
        for i, host in enumerate(HOSTS)
    ]
    attack = START + 29 * SPAN + 100
    lines.append(
        socket_line(
            "web-03",
            attack,
            pid=6666,
            name="beacon",
            path="/tmp/.x/beacon",
            cmdline="/tmp/.x/beacon --c2 203.0.113.99",
            remote_address="203.0.113.99",
            remote_port=8443,
            username="www-data",
        )
    )
    path.write_bytes(b"".join(lines))
    return attack


def test_a_rule_signal_reaches_every_format(tmp_path: Path, config: Config) -> None:
    log = tmp_path / "fleet.log"
    attack = fleet_log(log)
    with Store(tmp_path / "rarenet.db") as store:
        Ingester(store, config).ingest([str(log)])
        run = detect_once(store, config.detect, at=attack + SPAN)
        beacon = [d for d in run.documents if d["process"]["executable"] == "/tmp/.x/beacon"]
        assert len(beacon) == 1, run.as_json()["run"]
        sid = beacon[0]["id"]
        with receiving() as json_rx, receiving() as slack_rx, receiving() as ecs_rx:
            cfg = with_webhooks(
                config,
                {"url": json_rx.url, "name": "native", "secret": "s"},
                {"url": slack_rx.url, "name": "chat", "format": "slack"},
                {"url": ecs_rx.url, "name": "siem", "format": "ecs"},
            )
            report = deliver_once(store, cfg)  # real time: the signal was just committed
            assert report.delivered == report.attempted == 3 * run.signals
        for receiver in (json_rx, slack_rx, ecs_rx):
            assert sid in receiver.received_keys()
        (native,) = [r for r in json_rx.requests if r.key == sid]
        assert verify("s", native.body, native.headers["x-rarenet-signature"])
        assert orjson.loads(native.body)["process"]["executable"] == "/tmp/.x/beacon"
        (chat,) = [r for r in slack_rx.requests if r.key == sid]
        first = orjson.loads(chat.body)["text"].split("\n")[0]
        assert first.startswith(
            "rarenet: beacon (/tmp/.x/beacon) on web-03 connected to 203.0.113.99:8443 "
            "(external, no other host before) as www-data (a first)"
        )
        (siem,) = [r for r in ecs_rx.requests if r.key == sid]
        check_ecs(orjson.loads(siem.body))
        assert {d.state for r in list_signals(store) for d in r.deliveries} == {"delivered"}
