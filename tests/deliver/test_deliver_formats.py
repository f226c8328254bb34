"""Payload formats: the golden examples in docs/signals.md, every documented field of the
native document, ECS names and types of every field the `ecs` document sets, Slack's
first line, and hostile strings in every format."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from support import DOCS
from support.ecs_fields import check_ecs, leaves

from rarenet.baseline.deliver.examples import (
    EXAMPLE_LINKS,
    example_record,
    golden,
    golden_signature,
    rewrite,
)
from rarenet.baseline.deliver.formats import (
    RENDERERS,
    ecs_document,
    native_document,
    render,
    slack_message,
)
from rarenet.baseline.deliver.links import Links
from rarenet.baseline.deliver.outbox import SignalRecord
from rarenet.baseline.deliver.signing import verify

SIGNALS_DOC = DOCS / "signals.md"


def hostile_record() -> SignalRecord:
    return example_record(
        name="perl\n<!channel> & <@U123|admin>",
        path="/tmp/.x/\udcff\udcfe<b>*bold*",
        host="web-017\r\nInjected: yes",
        cmdline="perl " + "A" * 10_240 + " \x00\x1b[31m\u202e",
        remote_address="not-an-ip",
        reason="reason with\nnewline <!here>",
    )


def test_golden_examples_in_the_docs_are_current() -> None:
    text = SIGNALS_DOC.read_text(encoding="utf-8")
    for fmt in ("json", "slack", "ecs", "signature"):
        assert f"<!-- golden:{fmt} -->" in text, f"docs/signals.md lacks the {fmt} example"
    assert rewrite(text) == text, (
        "docs/signals.md golden examples are stale: "
        "run `.venv/bin/python -m rarenet.baseline.deliver.examples docs/signals.md`"
    )
    assert golden("json") in text and golden_signature() in text


def test_the_documented_signature_verifies() -> None:
    body = render("json", example_record(), EXAMPLE_LINKS)
    assert verify("example-secret", body, golden_signature())
    assert not verify("other-secret", body, golden_signature())


NATIVE_FIELDS = [
    "@timestamp", "event.kind", "host.name", "host.id", "process.name", "process.executable",
    "process.pid", "process.args", "process.working_directory", "process.parent.pid",
    "process.parent.name", "user.name", "user.id", "destination.ip", "destination.port",
    "network.transport", "network.type", "network.direction", "rule.name", "rule.id",
    "threat", "risk_score", "severity", "score", "initial_score", "explanation", "reason", "id",
    "process.parent.executable", "process.parent.command_line", "process.chain", "group", "kind",
]  # fmt: skip


def present(doc: dict[str, Any], dotted: str) -> bool:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def test_native_json_has_every_documented_field() -> None:
    doc = orjson.loads(render("json", example_record()))
    for name in NATIVE_FIELDS:
        assert present(doc, name), name
    assert doc["event"]["kind"] == "signal" and doc["destination"]["port"] == 4444
    assert doc["process"]["parent"] == {
        "pid": 1204,
        "name": "apache2",
        "executable": "/usr/sbin/apache2",
        "command_line": "/usr/sbin/apache2 -k start",
    }
    assert [step["name"] for step in doc["process"]["chain"]] == ["apache2", "apache2", "systemd"]
    # a signal whose observation was pruned still carries every field, as null
    record = example_record()
    bare = {k: v for k, v in record.document.items() if k not in ("user", "destination")}
    bare["process"] = {"name": "perl", "executable": "/usr/bin/perl"}
    doc = native_document(SignalRecord(**{**record.__dict__, "document": bare}))
    for name in NATIVE_FIELDS:
        assert present(doc, name), name
    assert doc["process"]["pid"] is None and doc["destination"]["ip"] is None


def test_ecs_fields_are_valid_names_and_types() -> None:
    doc = ecs_document(example_record())
    check_ecs(doc)
    names = {name for name, _ in leaves(doc)}
    for required in ("@timestamp", "event.kind", "kibana.alert.rule.name", "kibana.alert.rule.rule_id",
                     "kibana.alert.rule.severity", "kibana.alert.rule.risk_score",
                     "kibana.alert.rule.threat.tactic.id", "kibana.alert.risk_score",
                     "kibana.alert.severity", "kibana.alert.reason", "kibana.alert.original_time",
                     "destination.ip", "process.parent.pid", "rarenet.score"):  # fmt: skip
        assert required in names, required
    assert doc["kibana"]["alert"]["original_time"] == example_record().document["@timestamp"]


def test_slack_first_line_says_who_what_where_why() -> None:
    message = slack_message(example_record())
    first, *rest = message["text"].split("\n")
    assert first == (
        "rarenet: perl (/usr/bin/perl) on web-017 connected to 203.0.113.9:4444 (external, "
        "no other host before) as www-data (a first)"
        " — score 80: never seen in 40,320 fleet host-buckets over 14.0d"
    )
    assert rest[0].startswith("score 80.0 (initial 80.0)")
    assert message["mrkdwn"] is False


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_hostile_strings_render_safely(fmt: str) -> None:
    record = hostile_record()
    body = render(fmt, record)
    assert body == render(fmt, record)  # deterministic: retries carry identical bytes
    body.decode("utf-8")  # valid UTF-8 (surrogates replaced)
    doc = orjson.loads(body)
    if fmt == "slack":
        text = doc["text"]
        lines = text.split("\n")
        assert len(lines) == 7, lines  # hostile newlines cannot add lines
        assert lines[5].startswith("chain: perl\\n&lt;!channel&gt;")
        assert "<" not in text and ">" not in text  # no <!channel>, mentions or links
        assert "&lt;!channel&gt;" in lines[0] and "\\n" in lines[0]
        assert "\x00" not in text and "\x1b" not in text and "\u202e" not in text
        assert len(text) < 3000
    else:
        flat = orjson.dumps(doc).decode()
        assert "\udcff" not in flat and "\ufffd" in flat
        assert "A" * 10_240 in flat  # nothing silently cut from the machine formats
    if fmt == "ecs":
        check_ecs(doc)
        assert "ip" not in doc["destination"] and doc["destination"]["address"] == "not-an-ip"


def test_slack_answers_who_used_the_destination_and_the_user_before() -> None:
    """The guide's questions on the first line: did other hosts talk there, did this user
    run it here before (explanation.destination / .user, when the signal carries them)."""
    record = example_record()
    doc = record.document
    doc["explanation"]["destination"] |= {"other_hosts_before": 2, "other_hosts_at_least": True}
    doc["explanation"]["user"] = {"name": "www-data", "ran_it_before": False, "usual": ["root"]}
    first = slack_message(record)["text"].split("\n")[0]
    assert (
        "203.0.113.9:4444 (external, 2+ other hosts before) as www-data (a first: usual root)"
        in first
    )
    doc["explanation"]["destination"] |= {"other_hosts_before": 0, "binary_elsewhere_before": 2}
    first = slack_message(record)["text"].split("\n")[0]
    assert "(external, before only by 2 other hosts of this binary)" in first
    doc["explanation"]["user"]["ran_it_before"] = True
    del doc["explanation"]["destination"]
    first = slack_message(record)["text"].split("\n")[0]
    assert "203.0.113.9:4444 (external) as www-data (who ran it here before)" in first


def test_links_lead_to_the_signal_page_and_the_host_in_fleet() -> None:
    """`[server] public_url` and `fleet_url`: every format links to the signal's console
    page and its host in Fleet; a hostile host name is percent-encoded, never a second
    URL or a Slack link; without the settings the links are null and Slack says none."""
    record = example_record()
    links = Links("https://rarenet.example.com/", "https://fleet.example.com")
    doc = native_document(record, links)
    assert doc["links"]["signal"] == f"https://rarenet.example.com/signals/{record.id}"
    assert doc["links"]["fleet_host"].endswith(
        "/hosts/manage?query=4c4c4544-0042-3510-8057-b4c04f4e3732"
    )
    linked = ecs_document(record, links)
    assert linked["event"]["url"] == doc["links"]["signal"]
    check_ecs(linked)  # event.url and rarenet.links are defined fields
    last = slack_message(record, links)["text"].split("\n")[-1]
    assert last == f"open: {doc['links']['signal']} · in Fleet: {doc['links']['fleet_host']}"
    hostile = SignalRecord(**{**record.__dict__, "document": {**record.document,
                           "host": {"name": "a b<!channel>|x&y=1#z"}}})  # fmt: skip
    fleet = native_document(hostile, links)["links"]["fleet_host"]
    assert fleet.endswith("query=a%20b%3C%21channel%3E%7Cx%26y%3D1%23z")
    assert native_document(record)["links"] == {"signal": None, "fleet_host": None}
    assert "open:" not in slack_message(record)["text"]
    assert ecs_document(record)["event"].get("url") is None
