"""Every result-log shape of DESIGN.md §5 → observations, checked field by field."""

from __future__ import annotations

import orjson
import pytest
from support.osquery_lines import (
    T0,
    batch,
    calendar,
    envelope,
    event,
    fleet_body,
    line,
    snapshot,
    socket_row,
)

from rarenet.baseline.ingest.model import Observation
from rarenet.baseline.ingest.normalise import Normaliser
from rarenet.baseline.ingest.parser import Parser, query_name

DEFAULT_EXCLUDED = ["osqueryd", "orbit"]


@pytest.fixture
def parser() -> Parser:
    return Parser(Normaliser(exclude_processes=DEFAULT_EXCLUDED))


def only(parser: Parser, obj: object) -> Observation:
    result = parser.parse_line(line(obj))
    assert result.errors == []
    assert len(result.observations) == 1
    return result.observations[0]


def test_differential_event_every_field(parser: Parser) -> None:
    obs = only(parser, event(socket_row()))
    assert obs._asdict() | {"digest": 0} == {
        "time": T0,
        "host": "web-001",
        "host_uuid": "uuid-web-001",
        "name": "bash",
        "path": "/usr/bin/bash",
        "pid": 4242,
        "uid": 33,
        "username": "www-data",
        "cmdline": "bash -i",
        "cwd": "/var/www",
        "parent_pid": 4000,
        "parent_name": "php-fpm8.2",
        "family": 2,
        "protocol": 6,
        "local_address": "10.0.0.5",
        "local_port": 51234,
        "remote_address": "203.0.113.7",
        "remote_port": 4444,
        "state": "ESTABLISHED",
        "direction": "outbound",
        "query": "rarenet_open_sockets",
        "digest": 0,
        "ancestors": "",
    }
    assert isinstance(obs.digest, int) and -(2**63) <= obs.digest < 2**63


def test_removed_rows_are_not_activity(parser: Parser) -> None:
    result = parser.parse_line(line(event(socket_row(), action="removed")))
    assert result.observations == [] and result.skipped == 1 and result.errors == []


def test_snapshot_keeps_every_row(parser: Parser) -> None:
    rows = [
        socket_row(pid=10 + i, remote_port=443, name="curl", path="/usr/bin/curl") for i in range(3)
    ]
    result = parser.parse_line(line(snapshot(rows, host="db-002", unix=T0 + 60)))
    assert [o.pid for o in result.observations] == [10, 11, 12]
    assert {(o.host, o.time, o.name, o.remote_port) for o in result.observations} == {
        ("db-002", T0 + 60, "curl", 443)
    }


def test_batch_uses_added_only(parser: Parser) -> None:
    added = [socket_row(pid=7, name="nc", path="/usr/bin/nc.openbsd")]
    removed = [socket_row(pid=8, name="curl", path="/usr/bin/curl")]
    result = parser.parse_line(line(batch(added, removed)))
    assert [(o.pid, o.name) for o in result.observations] == [(7, "nc")]


def test_fleet_webhook_body_with_mixed_shapes(parser: Parser) -> None:
    body = fleet_body(
        [
            event(socket_row(pid=1001), host="a"),
            snapshot([socket_row(pid=1002)], host="b"),
            batch([socket_row(pid=1003)], host="c"),
        ]
    )
    result = parser.parse_line(line(body))
    assert [(o.host, o.pid) for o in result.observations] == [("a", 1001), ("b", 1002), ("c", 1003)]


def test_json_array_of_result_objects(parser: Parser) -> None:
    result = parser.parse_line(line([event(socket_row(pid=5)), event(socket_row(pid=6))]))
    assert [o.pid for o in result.observations] == [5, 6]


def test_numbers_may_be_numbers_or_strings(parser: Parser) -> None:
    as_numbers = {k: (int(v) if v.isdigit() else v) for k, v in socket_row().items()}
    a = only(parser, event(as_numbers))
    b = only(parser, event(socket_row()))
    assert a == b


def test_unixtime_as_string_and_calendar_time_fallback(parser: Parser) -> None:
    a = only(parser, event(socket_row(), unixTime=str(T0)))
    obj = event(socket_row())
    del obj["unixTime"]
    b = only(parser, obj)
    assert a.time == b.time == T0


def test_legacy_hostname_and_decorations_only(parser: Parser) -> None:
    obj = event(socket_row())
    del obj["hostIdentifier"]
    obj["hostname"] = "legacy-host"
    assert only(parser, obj).host == "legacy-host"
    obj2 = event(socket_row())
    del obj2["hostIdentifier"]
    assert only(parser, obj2).host == "web-001"  # decorations.hostname


def test_counter_zero_first_run_is_ordinary_data(parser: Parser) -> None:
    assert only(parser, event(socket_row(), counter=0)).pid == 4242


@pytest.mark.parametrize(
    ("name", "bare"),
    [
        ("rarenet_open_sockets", "rarenet_open_sockets"),
        ("pack/unusual-network-activity/rarenet_open_sockets", "rarenet_open_sockets"),
        ("pack/Global/rarenet_open_sockets", "rarenet_open_sockets"),
        ("pack/team-3/rarenet_socket_events", "rarenet_socket_events"),
        ("pack/Global/team/nested/query", "team/nested/query"),
        ("pack_unusual-network-activity_rarenet_open_sockets", "rarenet_open_sockets"),
    ],
)
def test_query_names(name: str, bare: str) -> None:
    assert query_name(name) == bare


def test_other_queries_are_skipped_unless_they_look_like_sockets(parser: Parser) -> None:
    other = event({"name": "launchd", "version": "1"}, name="pack/Global/installed_software")
    result = parser.parse_line(line(other))
    assert result.observations == [] and result.skipped == 1 and result.errors == []
    own = event(
        {"pid": "9", "name": "ncat", "remote_address": "198.51.100.1", "remote_port": "80"},
        name="pack/Global/my_sockets",
    )
    obs = only(parser, own)
    assert (obs.name, obs.path, obs.query, obs.uid, obs.parent_pid) == (
        "ncat",
        "",
        "my_sockets",
        -1,
        -1,
    )


def test_socket_events_use_event_time_and_path(parser: Parser) -> None:
    row = {
        "action": "connect",
        "pid": "77",
        "path": "/tmp/.x/beacon",
        "fd": "3",
        "family": "2",
        "protocol": "6",
        "local_address": "",
        "local_port": "0",
        "remote_address": "203.0.113.99",
        "remote_port": "8443",
        "time": str(T0 - 30),
        "status": "succeeded",
        "auid": "1000",
        "success": "1",
    }
    obs = only(parser, event(row, name="pack/unusual-network-activity/rarenet_socket_events"))
    assert (obs.time, obs.name, obs.path, obs.direction, obs.query) == (
        T0 - 30,
        "beacon",
        "/tmp/.x/beacon",
        "outbound",
        "rarenet_socket_events",
    )
    bind = parser.parse_line(line(event({**row, "action": "bind"}, name="rarenet_socket_events")))
    assert bind.observations == [] and bind.filtered == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"remote_address": "127.0.0.1"},
        {"remote_address": "127.0.0.53"},
        {"remote_address": "::1", "family": "10"},
        {"remote_address": "::ffff:127.0.0.1", "family": "10"},
        {"remote_address": "0.0.0.0", "remote_port": "0"},
        {"remote_address": "::", "family": "10"},
        {"pid": "-1"},
        {"family": "1", "remote_address": "", "remote_port": "0"},  # unix socket
        {"state": "LISTEN", "remote_address": "0.0.0.0", "remote_port": "0"},
        {"name": "osqueryd", "path": "/opt/osquery/bin/osqueryd"},
    ],
)
def test_filtered_rows(parser: Parser, overrides: dict[str, str]) -> None:
    result = parser.parse_line(line(event(socket_row(**overrides))))
    assert result.observations == [] and result.filtered == 1 and result.errors == []


def test_configured_exclusions() -> None:
    parser = Parser(
        Normaliser(
            exclude_destinations=["10.0.0.0/8"],
            exclude_processes=["java*"],
            exclude_users=["jenkins"],
        )
    )
    for overrides in ({"remote_address": "10.1.2.3"}, {"name": "java17"}, {"username": "jenkins"}):
        assert parser.parse_line(line(event(socket_row(**overrides)))).filtered == 1
    assert len(parser.parse_line(line(event(socket_row()))).observations) == 1


def test_direction_from_listening_rows_in_the_same_snapshot(parser: Parser) -> None:
    listen = socket_row(
        pid=900, local_port=22, remote_address="0.0.0.0", remote_port=0, state="LISTEN"
    )
    accepted = socket_row(
        pid=900, local_port=22, remote_port=50000, name="sshd", path="/usr/sbin/sshd"
    )
    del accepted["direction"]
    result = parser.parse_line(line(snapshot([listen, accepted])))
    assert [(o.name, o.direction) for o in result.observations] == [("sshd", "inbound")]


def test_ipv6_peer(parser: Parser) -> None:
    obs = only(
        parser,
        event(socket_row(family=10, remote_address="2001:db8::7", local_address="2001:db8::5")),
    )
    assert (obs.family, obs.remote_address) == (10, "2001:db8::7")


def test_same_content_same_digest_and_any_change_differs(parser: Parser) -> None:
    a = only(parser, event(socket_row()))
    assert only(parser, event(socket_row())).digest == a.digest
    assert only(parser, event(socket_row(remote_port=4445))).digest != a.digest
    assert only(parser, event(socket_row(), host="web-002")).digest != a.digest


def test_calendar_helper_matches_osquery_format() -> None:
    assert calendar(T0) == "Mon Jan  5 00:01:00 2026 UTC"
    assert orjson.loads(line(envelope()))["calendarTime"] == "Mon Jan  5 00:01:00 2026 UTC"
