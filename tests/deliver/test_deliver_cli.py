"""`rarenet signals list|show|redeliver|deliver` against a store and a real receiver."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from click.testing import CliRunner
from support.deliver_helpers import add_signal
from support.deliver_receiver import Reply, receiving

from rarenet.baseline.cli import main
from rarenet.baseline.store import Store


def invoke(db: Path, toml: Path | None, *args: str) -> tuple[int, str]:
    extra = ["--config", str(toml)] if toml else []
    result = CliRunner().invoke(main, ["signals", *args, "--db", str(db), *extra])
    return result.exit_code, result.output


def test_list_show_redeliver_and_deliver(tmp_path: Path) -> None:
    db = tmp_path / "rarenet.db"
    with Store(db) as store:
        sid = add_signal(store, time.time() - 60)
        other = add_signal(store, time.time() - 30, host="db-001")
    with receiving(lambda _n, s: Reply(400 if s.key == other else 200)) as receiver:
        toml = tmp_path / "rarenet.toml"
        toml.write_text(
            f'[[webhooks]]\nurl = "{receiver.url}"\nname = "oncall"\nformat = "slack"\n'
            f'[[webhooks]]\nurl = "{receiver.url}"\nformat = "ecs"\nsecret = "k"\n'
        )
        code, out = invoke(db, toml, "deliver")
        assert code == 1 and "4 attempted: 2 delivered, 0 retrying, 2 failed" in out
        assert len(receiver.requests) == 4

        code, out = invoke(db, toml, "list")
        assert code == 0 and sid[:12] in out and "oncall:delivered" in out
        assert "failed" in out and "s3cr3t" not in out

        code, out = invoke(db, toml, "list", "--state", "failed", "--json")
        listed = orjson.loads(out)["signals"]
        assert code == 0 and [s["id"] for s in listed] == [other]
        assert {d["last_status"] for d in listed[0]["deliveries"]} == {400}

        code, out = invoke(db, toml, "show", other[:8])
        assert (
            code == 0
            and f"signal   {other}" in out
            and "oncall: failed, 1 attempt, HTTP 400" in out
        )
        assert "last error: HTTP 400" in out and "s3cr3t" not in out
        code, out = invoke(db, toml, "show", sid, "--json")
        shown = orjson.loads(out)
        assert shown["id"] == sid and shown["state"] == "delivered"
        assert shown["document"]["process"]["name"] == "perl"

        receiver.script = lambda _n, _s: Reply(200)
        code, out = invoke(db, toml, "redeliver", other, "--webhook", "oncall")
        assert code == 0 and out.strip() == f"queued {other} for oncall"
        code, out = invoke(db, toml, "deliver", "--json")
        assert code == 0 and orjson.loads(out)["delivered"] == 1
        assert receiver.received_keys().count(other) == 3  # the ecs one stays failed

        code, out = invoke(db, toml, "show", "0" * 32)
        assert code == 2 and "no signal with id" in out
        code, out = invoke(db, toml, "redeliver", sid, "--webhook", "nope")
        assert code == 2 and "no configured webhook is named 'nope'" in out
        assert "s3cr3t" not in out


def test_empty_outbox_and_no_webhooks(tmp_path: Path) -> None:
    db = tmp_path / "rarenet.db"
    Store(db).close()
    assert invoke(db, None, "list") == (0, "no signals\n")
    assert invoke(db, None, "deliver") == (
        0,
        "0 attempted: 0 delivered, 0 retrying, 0 failed; 0 dead-lettered\n",
    )
    with Store(db) as store:
        sid = add_signal(store, 1.0)
    code, out = invoke(db, None, "redeliver", sid)
    assert code == 2 and "no webhook is configured" in out


def test_hostile_fields_cannot_drive_the_terminal(tmp_path: Path) -> None:
    db = tmp_path / "rarenet.db"
    with Store(db) as store:
        sid = add_signal(store, 1.0, host="evil\x1b[2J\u202e", path="/tmp/\r\n.x")
    for args in (["list"], ["show", sid]):
        code, out = invoke(db, None, *args)
        assert code == 0 and "\x1b" not in out and "\u202e" not in out and "\r" not in out
        assert "evil\\x1b[2J\\u202e" in out
