"""The extension's parts without osquery: settings, snapshot parsing and sync, the SDK
adapter's answers to bad calls, constraint push-down and the tables' rows."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ROOT
from support.osquery_schema import osquery_schema
from support.snapshot_server import SnapshotServer, snapshot_doc

from rarenet.extension import sdk
from rarenet.extension.sdk import Handler, QueryContext, Registry, parse_context
from rarenet.extension.settings import ExtensionSettings, SettingsError, load_settings
from rarenet.extension.snapshot import SnapshotError, parse_snapshot
from rarenet.extension.sync import SnapshotSync
from rarenet.extension.tables import (
    OPEN_SOCKETS_SQL,
    CoreSockets,
    FallbackSockets,
    NetworkBaseline,
    ProcSockets,
    UnusualNetworkActivity,
    socket_sql,
)


class FixedSockets:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows_ = rows
        self.asked: list[Any] = []

    def rows(self, equals: Any) -> list[dict[str, Any]]:
        self.asked.append(equals)
        return list(self.rows_)


def socket(pid: int, name: str, path: str) -> dict[str, str]:
    return {"pid": str(pid), "fd": "3", "name": name, "path": path, "remote_address": "203.0.113.9",
            "remote_port": "4444", "family": "2", "protocol": "6"}  # fmt: skip


def loaded_sync(tmp_path: Path, doc: dict[str, Any] | None = None) -> SnapshotSync:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(doc or snapshot_doc()))
    sync = SnapshotSync(ExtensionSettings(snapshot_path=str(path), cache_dir=str(tmp_path / "c")))
    sync.refresh_once()
    return sync


# -- settings -------------------------------------------------------------------------------


def test_settings_precedence_default_file_env(tmp_path: Path) -> None:
    assert load_settings(env={}) == ExtensionSettings()
    config = tmp_path / "rarenet.toml"
    config.write_text('[extension]\nsnapshot_url = "http://c:8089/v1/snapshot"\nrefresh = "10m"\n'
                      '[store]\npath = "x.db"\n')  # fmt: skip
    from_file = load_settings(env={"RARENET_CONFIG": str(config)})
    assert from_file.snapshot_url == "http://c:8089/v1/snapshot" and from_file.refresh == 600
    env = {"RARENET_CONFIG": str(config), "RARENET_EXTENSION_REFRESH": "90s",
           "RARENET_EXTENSION_TOKEN": "s3cret"}  # fmt: skip
    both = load_settings(env=env)
    assert both.refresh == 90 and both.token == "s3cret" and both.snapshot_url.startswith("http")
    (tmp_path / "rarenet.toml").write_text('[extension]\ncache_dir = "/tmp/x"\n')
    assert load_settings(env={}).cache_dir == "/tmp/x"  # ./rarenet.toml (cwd is tmp_path)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"RARENET_EXTENSION_REFRESH": "soon"},
            r"\$RARENET_EXTENSION_REFRESH: 'soon' is not a duration",
        ),
        ({"RARENET_EXTENSION_REFRESH": "0s"}, r"REFRESH: '0s' is below the minimum"),
        ({"RARENET_EXTENSION_COLOUR": "red"}, r"\$RARENET_EXTENSION_COLOUR: unknown setting"),
        ({"RARENET_CONFIG": "/nonexistent/rarenet.toml"}, r"config file not found"),
    ],
)
def test_bad_settings_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env)


def test_bad_settings_in_the_file_name_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[extension]\nrefresh = true\n")
    with pytest.raises(
        SettingsError, match=r"bad.toml: \[extension\] refresh: True is not a duration"
    ):
        load_settings(env={"RARENET_CONFIG": str(config)})
    config.write_text("[extension\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(env={"RARENET_CONFIG": str(config)})


# -- snapshot parsing -----------------------------------------------------------------------


def test_snapshot_parses_and_indexes() -> None:
    snap = parse_snapshot(json.dumps(snapshot_doc()))
    assert snap.version == 1 and snap.fleet.mature and snap.fleet.hosts == 200
    assert snap.path_entries("/usr/bin/bash")[0].hosts == 20
    assert snap.name_entries("nginx")[0].on_host == 1344
    assert snap.host_active_buckets == 1344 and snap.mature_buckets == 288
    assert snap.data_time == 1768780800


def test_snapshot_without_optional_fields_still_reads() -> None:
    doc = snapshot_doc(host=None)
    del doc["host_activity"]
    for entry in doc["entries"]:
        del entry["host_buckets_on_host"]
    snap = parse_snapshot(json.dumps(doc))
    assert snap.host_active_buckets is None and snap.entries[0].on_host is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps(snapshot_doc(version=2)).encode(), "unsupported snapshot version 2"),
        (json.dumps(snapshot_doc(version="1")).encode(), "unsupported snapshot version '1'"),
        (json.dumps({"version": 1}).encode(), "missing 'entries'"),
        (
            json.dumps(
                snapshot_doc(entries=[{"name": "x", "path": "/x", "hosts": -1, "host_buckets": 1}])
            ).encode(),
            "bad entry '/x'",
        ),
        (
            json.dumps(snapshot_doc(entries=[{"name": "x"}])).encode(),
            "entries must be a list of entries",
        ),
        (json.dumps(snapshot_doc(data_time="yesterday")).encode(), "not an ISO 8601 time"),
        (json.dumps(snapshot_doc(fleet=[])).encode(), "fleet must be an object"),
    ],
)
def test_bad_snapshots_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(SnapshotError, match=re.escape(message)):
        parse_snapshot(data)


# -- the SDK adapter ------------------------------------------------------------------------


class Quirky:
    name = "quirky"
    columns = (("a", sdk.TEXT), ("b", sdk.INTEGER), ("c", sdk.TEXT))

    def __init__(self) -> None:
        self.fail = False
        self.sleep = 0.0

    def generate(self, context: QueryContext) -> Iterator[dict[str, Any]]:
        if self.fail:
            raise RuntimeError("boom")
        time.sleep(self.sleep)
        yield {"a": None, "b": 7, "c": True}
        yield {"a": "x"}


def test_adapter_rows_are_complete_strings_from_a_generator() -> None:
    handler = Handler(Registry([Quirky()]))
    response = handler.call("table", "quirky", {"action": "generate", "context": "{}"})
    assert response.status.code == 0
    assert response.response == [{"a": "", "b": "7", "c": "1"}, {"a": "x", "b": "", "c": ""}]
    assert isinstance(response.response, list)


def test_adapter_answers_every_bad_call_with_a_status() -> None:
    table = Quirky()
    handler = Handler(Registry([table]), deadline=0.3)
    bad = [
        (("table", "quirky", {"action": "generate", "context": "{bad"}), "malformed context JSON"),
        (("table", "quirky", {"action": "generate", "context": "[1]"}), "not a JSON object"),
        (("table", "quirky", {"action": "delete"}), "unknown action 'delete'"),
        (("table", "quirky", {}), "unknown action None"),
        (("table", "nope", {"action": "generate"}), "unknown table 'nope'"),
        (("config", "quirky", {"action": "genConfig"}), "unknown registry 'config'"),
    ]
    for args, message in bad:
        response = handler.call(*args)
        assert response.status.code == 1 and message in response.status.message, args
        assert response.response == []
    table.fail = True
    failed = handler.call("table", "quirky", {"action": "generate"})
    assert failed.status.code == 1 and "RuntimeError: boom" in failed.status.message
    table.fail, table.sleep = False, 2.0
    started = time.monotonic()
    slow = handler.call("table", "quirky", {"action": "generate"})
    assert time.monotonic() - started < 1.5
    assert slow.status.code == 1 and "longer than 0.3s" in slow.status.message
    assert handler.call(None, None, None).status.code == 1  # type: ignore[arg-type]


def test_columns_and_registry_routes_and_reset() -> None:
    registry = Registry([Quirky()])
    routes = registry.routes()["table"]["quirky"]
    assert routes[1] == {"id": "column", "name": "b", "type": "INTEGER", "op": "0"}
    assert Handler(registry).call("table", "quirky", {"action": "columns"}).response == routes
    with pytest.raises(ValueError, match="already registered"):
        registry.add(Quirky())
    registry.reset()
    assert registry.routes() == {"table": {}}


def test_context_constraints() -> None:
    raw = json.dumps({"constraints": [
        {"name": "pid", "list": [{"op": 2, "expr": "123"}, {"op": 16, "expr": "9"}], "affinity": "INTEGER"},
        {"name": "name", "list": [{"op": 2, "expr": "it's"}], "affinity": "TEXT"},
        {"name": 5, "list": "junk"}, "junk",
    ], "colsUsed": ["pid", "name"]})  # fmt: skip
    context = parse_context(raw)
    assert context.equals == {"pid": ("123",), "name": ("it's",)}
    assert context.columns_used == {"pid", "name"}
    assert parse_context(None) == QueryContext() == parse_context("")
    assert parse_context('{"constraints": 7}').equals == {}


def test_push_down_is_quoted_and_validated() -> None:
    assert socket_sql({}) == OPEN_SOCKETS_SQL
    sql = socket_sql({"pid": ("12",), "name": ("x' OR '1'='1",), "uid": ("0; DROP TABLE x",),
                      "path": ("a\x00b",), "anomaly_score": ("50",)})  # fmt: skip
    assert sql.endswith("WHERE pid = 12 AND name = 'x'' OR ''1''=''1'")


def test_pack_query_is_the_same_statement() -> None:
    pack = (ROOT / "queries" / "rarenet_open_sockets.sql").read_text()
    body = " ".join(line for line in pack.splitlines() if not line.lstrip().startswith("--"))

    def tokens(sql: str) -> list[str]:
        return re.findall(r"'[^']*'|\w+|[^\w\s]", sql.rstrip().rstrip(";"))

    assert tokens(body) == tokens(OPEN_SOCKETS_SQL)


# -- tables ---------------------------------------------------------------------------------


def test_activity_scores_and_explains(tmp_path: Path) -> None:
    sync = loaded_sync(tmp_path)
    rows = [socket(1, "nginx", "/usr/sbin/nginx"), socket(2, "beacon", "/tmp/.x/beacon"),
            socket(3, "bash", "/usr/bin/bash"), socket(4, "nginx", "/tmp/nginx")]  # fmt: skip
    table = UnusualNetworkActivity(FixedSockets(rows), sync, clock=lambda: 1768780803 + 60)
    out = sdk.materialise(table, table.generate(QueryContext()))
    by_pid = {row["pid"]: row for row in out}
    assert by_pid["1"]["anomaly_score"] == "8" and by_pid["1"]["score"] == "8.1"  # routine
    assert by_pid["1"]["host_buckets_on_host"] == "1344"
    assert by_pid["2"]["anomaly_score"] == "100" and "never seen" in by_pid["2"]["reason"]
    assert by_pid["3"]["anomaly_score"] == "60" and "new on this host" in by_pid["3"]["reason"]
    assert by_pid["4"]["anomaly_score"] == "100" and "masquerade" in by_pid["4"]["reason"]
    assert {row["snapshot_age"] for row in out} == {"60"}
    assert {row["snapshot_version"] for row in out} == {"1"}
    assert all("None" not in value for row in out for value in row.values())


def test_activity_filters_on_equality_constraints(tmp_path: Path) -> None:
    sync = loaded_sync(tmp_path)
    rows = [socket(1, "nginx", "/usr/sbin/nginx"), socket(2, "beacon", "/tmp/.x/beacon")]
    source = FixedSockets(rows)
    table = UnusualNetworkActivity(source, sync)
    assert [r["pid"] for r in table.generate(QueryContext({"pid": ("2",)}))] == ["2"]
    assert source.asked[-1] == {"pid": ("2",)}  # passed on for push-down
    assert [r["pid"] for r in table.generate(QueryContext({"anomaly_score": ("100",)}))] == ["2"]
    assert list(table.generate(QueryContext({"name": ("nginx",), "pid": ("2",)}))) == []
    assert len(list(table.generate(QueryContext({"pid": ("abc",)})))) == 2  # unsure: keep


def test_without_a_snapshot_rows_say_so(tmp_path: Path) -> None:
    sync = SnapshotSync(ExtensionSettings(cache_dir=str(tmp_path)))
    sync.refresh_once()
    table = UnusualNetworkActivity(FixedSockets([socket(1, "nginx", "/usr/sbin/nginx")]), sync)
    (row,) = sdk.materialise(table, table.generate(QueryContext()))
    assert row["anomaly_score"] == "" and row["snapshot_version"] == ""
    assert row["reason"].startswith("no snapshot: no snapshot source")
    assert list(NetworkBaseline(sync).generate(QueryContext())) == []


def test_network_baseline_rows_and_lookup(tmp_path: Path) -> None:
    table = NetworkBaseline(loaded_sync(tmp_path))
    rows = sdk.materialise(table, table.generate(QueryContext()))
    assert [r["name"] for r in rows] == ["bash", "nginx"]
    assert rows[1] == {"name": "nginx", "path": "/usr/sbin/nginx", "hosts": "150",
                       "host_buckets": "80640", "first_seen": "1767571200", "last_seen": "1768779900",
                       "rarity": "0", "host_buckets_on_host": "1344", "data_time": "1768780800",
                       "generated_at": "1768780803", "snapshot_version": "1"}  # fmt: skip
    assert [r["name"] for r in table.generate(QueryContext({"path": ("/usr/bin/bash",)}))] == [
        "bash"
    ]
    assert list(table.generate(QueryContext({"name": ("nope",)}))) == []
    assert list(table.generate(QueryContext({"name": ("bash",), "hosts": ("3",)}))) == []


def test_proc_source_gives_the_collector_rows() -> None:
    rows = ProcSockets().rows({})
    assert all(set(row) >= {"pid", "name", "path", "remote_address"} for row in rows)


def test_sockets_come_from_proc_when_core_cannot_give_them(tmp_path: Path) -> None:
    """No core answering at the socket: the fallback (/proc in the extension) answers;
    a core that answers is used as is."""

    class Fixed:
        def __init__(self, pid: str) -> None:
            self.pid = pid

        def rows(self, equals: object) -> list[dict[str, str]]:
            return [{"pid": self.pid, "name": "curl"}]

    source = FallbackSockets(CoreSockets(str(tmp_path / "no-core.em"), 0.5), Fixed("9"))
    assert list(source.rows({})) == [{"pid": "9", "name": "curl"}]
    assert source.last_source == "/proc"
    source = FallbackSockets(Fixed("7"), Fixed("9"))  # type: ignore[arg-type]
    assert list(source.rows({})) == [{"pid": "7", "name": "curl"}]
    assert source.last_source == "osquery"


# -- snapshot sync --------------------------------------------------------------------------


def test_file_source_reload_cache_and_bad_updates(tmp_path: Path) -> None:
    sync = loaded_sync(tmp_path)
    assert sync.state.snapshot is not None and sync.state.status == "snapshot current"
    assert (tmp_path / "c" / "snapshot.json").exists()  # the last good copy
    (tmp_path / "snap.json").write_text(json.dumps(snapshot_doc(version=9)))
    sync.refresh_once()
    assert sync.state.snapshot is not None  # the last good one stays
    assert "unsupported snapshot version 9" in sync.state.status
    assert sync.state.status.endswith("; using the last good snapshot")
    (tmp_path / "snap.json").unlink()
    sync.refresh_once()
    assert "No such file" in sync.state.status


def test_http_source_token_etag_cache(tmp_path: Path) -> None:
    with SnapshotServer(json.dumps(snapshot_doc()).encode()) as server:
        settings = ExtensionSettings(
            snapshot_url=server.url, token="tok", cache_dir=str(tmp_path / "cache")
        )
        sync = SnapshotSync(settings, host="web-1")
        sync.refresh_once()
        assert sync.state.snapshot is not None and sync.state.status == "snapshot current"
        assert server.requests[0]["path"] == "/v1/snapshot?host=web-1"
        assert (tmp_path / "cache" / "snapshot.json").exists()
        sync.refresh_once()
        assert server.requests[1]["If-None-Match"] == '"v1"'
        assert "304" in sync.state.status and sync.state.snapshot is not None
        # a restart with the server down starts from the cache
        server.status = 503
        again = SnapshotSync(settings, host="web-1")
        again.load_cache()
        assert again.state.snapshot is not None and "cached" in again.state.status
        again.refresh_once()
        assert "HTTP 503" in again.state.status and again.state.snapshot is not None
        bad = SnapshotSync(ExtensionSettings(snapshot_url=server.url, token="wrong", cache_dir=""))
        bad.refresh_once()
        assert bad.state.snapshot is None and "HTTP 401" in bad.state.status


def test_a_hanging_server_never_blocks_generate(tmp_path: Path) -> None:
    with SnapshotServer(json.dumps(snapshot_doc()).encode()) as server:
        server.delay = 3.0
        settings = ExtensionSettings(
            snapshot_url=server.url, token="tok", cache_dir=str(tmp_path), refresh=60
        )
        sync = SnapshotSync(settings, fetch_timeout=1.0)
        sync.start()
        try:
            table = UnusualNetworkActivity(FixedSockets([socket(1, "a", "/a")]), sync)
            started = time.monotonic()
            (row,) = table.generate(QueryContext())
            assert time.monotonic() - started < 0.2
            assert row["reason"].startswith("no snapshot")
            deadline = time.monotonic() + 5
            while sync.refreshes == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "timed out" in sync.state.status
        finally:
            sync.stop()


def test_url_must_be_http(tmp_path: Path) -> None:
    sync = SnapshotSync(ExtensionSettings(snapshot_url="file:///etc/passwd", cache_dir=""))
    sync.refresh_once()
    assert "not an http(s) URL" in sync.state.status


# -- the wire encoder -----------------------------------------------------------------------


def thrift_reply(seqid: int, response: Any) -> bytes:
    from osquery.extensions.Extension import call_result
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.Thrift import TMessageType
    from thrift.transport import TTransport

    buffer = TTransport.TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin("call", TMessageType.REPLY, seqid)
    call_result(success=response).write(protocol)
    protocol.writeMessageEnd()
    return bytes(buffer.getvalue())


def test_wire_bytes_equal_thrift_s_own() -> None:
    from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus

    from rarenet.extension.wire import encode_call_reply, encode_rows

    rows = [{"a": None, "b": 7, "c": "é\ud800"}, {"a": "x"}]
    materialised = [{"a": "", "b": "7", "c": "é?"}, {"a": "x", "b": "", "c": ""}]
    status = ExtensionStatus(code=0, message="OK")
    expected = thrift_reply(9, ExtensionResponse(status=status, response=materialised))
    encoded = encode_rows(["a", "b", "c"], rows, sdk.cell)
    assert encode_call_reply(9, ExtensionResponse(status=status, response=encoded)) == expected
    assert encode_call_reply(9, ExtensionResponse(status=status, response=materialised)) == expected
    failed = ExtensionResponse(status=ExtensionStatus(code=1, message="bad", uuid=3), response=[])
    assert encode_call_reply(2**31 - 1, failed) == thrift_reply(2**31 - 1, failed)


def test_encoded_handler_answers_wire_rows() -> None:
    handler = Handler(Registry([Quirky()]), deadline=5, encoded=True)
    response = handler.call("table", "quirky", {"action": "generate"})
    assert response.status.code == 0 and response.response.count == 2


# -- review regressions ---------------------------------------------------------------------


def test_pack_columns_keep_osquery_s_own_types() -> None:
    """osquery reads an extension's INTEGER column as a 32-bit int (DynamicTableRow's
    sqlite3_result_int): net_namespace (an inode such as 4026531840, TEXT in osquery) came
    out negative when it was declared INTEGER."""
    from rarenet.extension.collector import COLUMNS
    from rarenet.extension.tables import SOCKET_TYPES

    types = {
        name: {c["name"]: c["type"] for c in table["columns"]}
        for name, table in osquery_schema().items()
    }
    source = {"username": ("users", "username")}
    for column in ("name", "path", "cmdline", "cwd", "uid"):
        source[column] = ("processes", column)
    for level in ("parent", "grandparent", "great_grandparent"):
        source[level] = ("processes", "parent")  # p.parent, pp.parent, gp.parent
        for column in ("name", "path", "cmdline"):
            source[f"{level}_{column}"] = ("processes", column)  # pp., gp., ggp.
    assert tuple(SOCKET_TYPES) == COLUMNS
    wanted = {"text": "TEXT", "integer": "INTEGER", "bigint": "BIGINT"}
    for column, declared in SOCKET_TYPES.items():
        if column == "direction":
            continue  # computed by the pack query
        table, name = source.get(column, ("process_open_sockets", column))
        assert declared == wanted[types[table][name]], column
    assert SOCKET_TYPES["net_namespace"] == "TEXT"


def test_abandoned_calls_do_not_run_later() -> None:
    """A call osquery already got a timeout for must not run afterwards: it would send
    core another full sockets query and delay the calls that follow."""

    class Slow:
        name = "slow"
        columns = (("a", sdk.TEXT),)

        def __init__(self) -> None:
            self.runs = 0

        def generate(self, context: QueryContext) -> list[dict[str, str]]:
            self.runs += 1
            time.sleep(1.0)
            return [{"a": "x"}]

    table = Slow()
    handler = Handler(Registry([table]), deadline=0.3)
    answers: list[Any] = []
    callers = [
        threading.Thread(target=lambda: answers.append(handler.call("table", "slow", {"action": "generate"})))
        for _ in range(6)
    ]  # fmt: skip
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert len(answers) == 6 and all(a.status.code == 1 for a in answers)
    time.sleep(1.5)  # the two calls already running finish
    assert table.runs == 2  # the four still queued were dropped, not run


def test_the_token_never_follows_a_redirect_to_another_server(tmp_path: Path) -> None:
    from rarenet.extension.sync import _same_server

    seen: list[dict[str, str]] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers.items()))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    body = json.dumps(snapshot_doc()).encode()
    try:
        with SnapshotServer(body) as server:
            server.redirect = f"http://127.0.0.2:{other.server_address[1]}/elsewhere"
            sync = SnapshotSync(
                ExtensionSettings(snapshot_url=server.url, token="tok", cache_dir="")
            )
            sync.refresh_once()
            assert "HTTP 404" in sync.state.status
            assert len(seen) == 1 and "Authorization" not in seen[0]
            server.redirect = server.url.replace("/v1/snapshot", "/v1/snapshot2")  # same server
            sync.refresh_once()
            assert sync.state.snapshot is not None and sync.state.status == "snapshot current"
            server.redirect = "ftp://127.0.0.1/snapshot.json"  # urllib would follow it
            sync.refresh_once()
            assert "refusing a redirect from http to ftp" in sync.state.status
    finally:
        other.shutdown()
        other.server_close()
    split = urllib.parse.urlsplit
    assert _same_server(split("http://c/v1"), split("https://c/v1"))
    assert not _same_server(split("https://c/v1"), split("http://c/v1"))
    assert not _same_server(split("http://c:8089/v1"), split("http://c:8090/v1"))
    assert not _same_server(split("https://c/v1"), split("https://d/v1"))


def test_a_snapshot_file_that_never_ends_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rarenet.extension import sync as sync_module

    monkeypatch.setattr(sync_module, "MAX_SNAPSHOT_BYTES", 1 << 20)
    sync = SnapshotSync(ExtensionSettings(snapshot_path="/dev/zero", cache_dir=str(tmp_path)))
    sync.refresh_once()
    assert "larger than 1048576 bytes" in sync.state.status and sync.state.snapshot is None


def test_a_request_that_is_not_utf8_gets_an_answer(tmp_path: Path) -> None:
    """osquery passes a constraint's bytes as they are (`WHERE name = CAST(X'ff' AS TEXT)`);
    thrift's strict decoding dropped the connection without an answer."""
    import socket as sockets
    import struct

    from rarenet.extension.server import ExtensionServer

    def string(data: bytes) -> bytes:
        return struct.pack(">i", len(data)) + data

    context = b'{"constraints":[{"name":"a","list":[{"op":2,"expr":"\xff"}],"affinity":"TEXT"}]}'
    message = b"".join([
        struct.pack(">i", -2147418112 | 1), string(b"call"), struct.pack(">i", 7),
        struct.pack(">bh", 11, 1), string(b"table"), struct.pack(">bh", 11, 2), string(b"quirky"),
        struct.pack(">bh", 13, 3), bytes([11, 11]), struct.pack(">i", 2),
        string(b"action"), string(b"generate"), string(b"context"), string(context), b"\x00",
    ])  # fmt: skip
    server = ExtensionServer(str(tmp_path / "x.em.1"), Handler(Registry([Quirky()]), deadline=3))
    server.start()
    try:
        with sockets.socket(sockets.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(server.path)
            client.sendall(message)
            reply = client.recv(65536)
    finally:
        server.stop()
    assert reply.startswith(struct.pack(">i", -2147418112 | 2) + string(b"call"))
    assert string(b"OK") in reply  # answered; rows named "\ufffd" are none of Quirky's


def test_flags_as_osquery_passes_them_and_bad_seconds_refused() -> None:
    from rarenet.extension.main import parse_args

    # osquery's launchExtension: argv = [path, --verbose?, --socket, S, --timeout, T, --interval, I]
    args = parse_args(["--verbose", "--socket", "/x.em", "--timeout", "3", "--interval", "3"])
    assert (args.verbose, args.socket, args.timeout, args.interval) == (True, "/x.em", 3.0, 3.0)
    assert parse_args(["--timeout=10", "--interval=0"]).timeout == 10.0
    for bad in ("nan", "inf", "-1", "1e300", "3s"):  # nan looped forever, 1e300 overflowed
        with pytest.raises(SystemExit):
            parse_args(["--timeout", bad])
        with pytest.raises(SystemExit):
            parse_args(["--interval", bad])


def test_sigterm_while_waiting_for_core_exits_at_once(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "rarenet.extension",
        "--socket",
        str(tmp_path / "no.em"),
        "--timeout",
        "60",
    ]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        assert proc.stderr is not None
        proc.stderr.close()


def test_a_snapshot_sent_drop_by_drop_is_given_up(tmp_path: Path) -> None:
    """Each byte inside the socket timeout, the whole body never: the refresh used to hang
    on it for good while rows kept saying "snapshot current"."""
    import socket as sockets

    stop = threading.Event()
    listener = sockets.create_server(("127.0.0.1", 0))

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
            while not stop.wait(0.1):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/snapshot"
    sync = SnapshotSync(
        ExtensionSettings(snapshot_url=url, cache_dir=str(tmp_path)),
        fetch_timeout=1.0,
        fetch_deadline=1.0,
    )
    started = time.monotonic()
    try:
        sync.refresh_once()
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert time.monotonic() - started < 5
    assert "sent too slowly" in sync.state.status and sync.state.snapshot is None


def test_reasons_never_show_a_password_of_the_url(tmp_path: Path) -> None:
    url = "http://user:hunter2@127.0.0.1:9/v1/snapshot?token=abc"  # port 9: refused
    sync = SnapshotSync(ExtensionSettings(snapshot_url=url, cache_dir=""), fetch_timeout=2)
    sync.refresh_once()
    assert "failed" in sync.state.status
    assert "hunter2" not in sync.state.status and "abc" not in sync.state.status


def test_a_null_column_is_the_empty_string_osquery_sees(tmp_path: Path) -> None:
    """Core's JSON gives null for a NULL column (a UDP socket's state); the row carries ""
    and osquery keeps it for `state = ''`, so the filter must not drop it ("None" != "")
    and the push-down must not send `state = ''` (NULL = '' is false in core)."""
    udp = {**socket(7, "dhclient", "/usr/sbin/dhclient"), "state": None}
    table = UnusualNetworkActivity(FixedSockets([udp]), loaded_sync(tmp_path))
    assert [r["pid"] for r in table.generate(QueryContext({"state": ("",)}))] == ["7"]
    assert list(table.generate(QueryContext({"state": ("None",)}))) == []
    assert socket_sql({"state": ("",)}) == OPEN_SOCKETS_SQL


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"generated_at": "2026-01-19T00:00:03Z"', '"generated_at": 1e999'),
        ('"first_seen": "2026-01-05T00:00:00Z"', '"first_seen": -1e999'),
    ],
)
def test_an_infinite_number_is_refused_and_leaves_no_files(
    tmp_path: Path, old: str, new: str
) -> None:
    """1e999 parses as inf; int(inf) raised OverflowError past the SnapshotError handling:
    a vague status, a staged cache copy left behind on every refresh (a disk filling up),
    and, from the cache at start, an extension that could not start."""
    text = json.dumps(snapshot_doc()).replace(old, new, 1)
    assert new in text
    path, cache = tmp_path / "snap.json", tmp_path / "cache"
    path.write_text(text)
    sync = SnapshotSync(ExtensionSettings(snapshot_path=str(path), cache_dir=str(cache)))
    sync.refresh_once()
    assert "is not a time" in sync.state.status and sync.state.snapshot is None
    assert list(cache.iterdir()) == []
    (cache / "snapshot.json").write_text(text)
    sync.load_cache()  # ignored, never raised
    assert sync.state.snapshot is None


def test_a_huge_refresh_does_not_kill_the_refresh_thread(tmp_path: Path) -> None:
    """`refresh = "1e12"`-like values: Event.wait(1e12) raised OverflowError and the
    refresh thread died after its first refresh."""
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snapshot_doc()))
    settings = ExtensionSettings(snapshot_path=str(path), cache_dir="", refresh=1e12)
    sync = SnapshotSync(settings)
    sync.start()
    try:
        deadline = time.monotonic() + 5
        while sync.refreshes == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert sync._thread is not None and sync._thread.is_alive()
    finally:
        sync.stop()


def _entry(**changes: Any) -> dict[str, Any]:
    entry = dict(snapshot_doc()["entries"][0])
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (snapshot_doc(entries=[_entry(hosts=1e308)]), "is not a count from 0 to"),
        (snapshot_doc(entries=[_entry(host_buckets=1e308)]), "is not a count from 0 to"),
        (snapshot_doc(entries=[_entry(host_buckets_on_host=10**30)]), "is not a count"),
        (snapshot_doc(entries=[_entry(rarity=2.5)]), "is not a number from 0 to 1"),
        (snapshot_doc(entries=[_entry(rarity=-1e308)]), "is not a number from 0 to 1"),
        (snapshot_doc(entries=[_entry(first_seen=1e300)]), "is not a time from 1970 to 9999"),
        (snapshot_doc(entries=[_entry(last_seen="0001-01-01T00:00:00Z")]), "before 1970"),
        (snapshot_doc(fleet={**snapshot_doc()["fleet"], "hosts": 1e308}), "is not a count"),
        (snapshot_doc(fleet={**snapshot_doc()["fleet"], "host_buckets": 10**20}), "not a count"),
        (snapshot_doc(bucket_span=10**9), "is not a count from 0 to 604,800"),
        (snapshot_doc(history=1e300), "is not a count from 0 to"),
        (snapshot_doc(host_activity={"active_buckets": 1e308, "mature_buckets": 1}), "count"),
    ],
)
def test_a_hostile_number_is_refused_and_the_last_good_snapshot_kept(
    tmp_path: Path, doc: dict[str, Any], message: str
) -> None:
    """`hosts: 1e308` once passed validation, replaced the good snapshot, and every query
    then failed with OverflowError in scoring until a good snapshot came."""
    sync = loaded_sync(tmp_path)
    good = sync.state.snapshot
    assert good is not None
    (tmp_path / "snap.json").write_text(json.dumps(doc))
    sync.refresh_once()
    assert sync.state.snapshot is good
    assert message in sync.state.status and "using the last good snapshot" in sync.state.status
    assert len(sync.state.status) < 400  # a 309-digit number is not spelled out
    rows = [socket(1, "nginx", "/usr/sbin/nginx"), socket(2, "beacon", "/tmp/.x/beacon")]
    table = UnusualNetworkActivity(FixedSockets(rows), sync, clock=lambda: 1768780803 + 60)
    out = {r["pid"]: r for r in sdk.materialise(table, table.generate(QueryContext()))}
    assert out["1"]["anomaly_score"] == "8" and out["2"]["anomaly_score"] == "100"


def test_too_many_entries_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import rarenet.extension.snapshot as snapshot_module

    monkeypatch.setattr(snapshot_module, "MAX_ENTRIES", 1)
    with pytest.raises(SnapshotError, match="2 entries, over the limit of 1"):
        parse_snapshot(json.dumps(snapshot_doc()))


_LOAD_AND_MEASURE = """
import json, sys
import rarenet.extension.main, rarenet.extension.tables  # the whole extension, as osquery runs it

def peak_mib():  # VmHWM: exec gives a fresh mm (ru_maxrss would carry the parent's peak)
    for text in open("/proc/self/status"):
        if text.startswith("VmHWM:"):
            return int(text.split()[1]) / 1024

from rarenet.extension.settings import ExtensionSettings
from rarenet.extension.sync import SnapshotSync
sync = SnapshotSync(ExtensionSettings(snapshot_path=sys.argv[1], cache_dir=sys.argv[2]))
sync.refresh_once()
state = sync.state
print(json.dumps({"status": state.status,
                  "entries": len(state.snapshot.entries) if state.snapshot else 0,
                  "peak_mib": peak_mib()}))
"""


def _limit_sized_snapshot(path: Path, shape: str) -> int:
    """A snapshot at the limits: MAX_ENTRIES short entries, or long paths up to just under
    MAX_SNAPSHOT_BYTES. Returns its size in bytes."""
    from rarenet.extension.snapshot import MAX_ENTRIES
    from rarenet.extension.sync import MAX_SNAPSHOT_BYTES

    doc = snapshot_doc(entries=[])
    head, _, tail = json.dumps(doc).partition('"entries": []')
    with path.open("w") as out:
        out.write(head + '"entries": [')
        size, index = len(head), 0
        while True:
            if shape == "many":
                if index == MAX_ENTRIES:
                    break
                name, where = f"tool{index % 20000}", f"/opt/vendor{index % 97}/bin/t-{index}"
            else:
                name, where = f"t{index}", f"/opt/{'x' * 3800}/{index}"
            text = json.dumps(_entry(name=name, path=where, hosts=1 + index % 300))
            if shape == "long" and size + len(text) + len(tail) + 4 > MAX_SNAPSHOT_BYTES:
                break
            out.write(("," if index else "") + text)
            size += len(text) + 1
            index += 1
        out.write("]" + tail)
    return path.stat().st_size


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["many", "long"])
def test_a_snapshot_at_the_size_limit_loads_under_200_mib(tmp_path: Path, shape: str) -> None:
    """osquery's watchdog kills an extension past 200 MB by default: a snapshot at the
    limits (MAX_ENTRIES entries, or MAX_SNAPSHOT_BYTES of long paths) loads below that,
    measured as the process's peak RSS with the whole extension imported."""
    import subprocess
    import sys

    path = tmp_path / "snap.json"
    size = _limit_sized_snapshot(path, shape)
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_MEASURE, str(path), str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    assert result["status"] == "snapshot current", result
    assert result["entries"] > (100_000 if shape == "many" else 10_000)
    assert size > (30 << 20), size
    assert result["peak_mib"] < 200, result
