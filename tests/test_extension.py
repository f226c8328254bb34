"""The extension's parts without osquery: settings, snapshot parsing and sync, the SDK
adapter's answers to bad calls, constraint push-down and the tables' rows."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extension import sdk
from extension.sdk import Handler, QueryContext, Registry, parse_context
from extension.settings import ExtensionSettings, SettingsError, load_settings
from extension.snapshot import SnapshotError, parse_snapshot
from extension.sync import SnapshotSync
from extension.tables import (
    OPEN_SOCKETS_SQL,
    NetworkBaseline,
    ProcSockets,
    UnusualNetworkActivity,
    socket_sql,
)

ROOT = Path(__file__).resolve().parents[1]


def snapshot_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "generated_at": "2026-01-19T00:00:03Z",
        "data_time": "2026-01-19T00:00:00Z",
        "host": "web-1",
        "bucket_span": 900,
        "history": 1209600,
        "warmup_buckets": 20,
        "fleet": {"host_buckets": 268800, "hosts": 200, "buckets": 1344,
                  "since": "2026-01-05T00:00:00Z", "mature": True},
        "host_activity": {"active_buckets": 1344, "mature_buckets": 288},
        "entries": [
            {"name": "bash", "path": "/usr/bin/bash", "hosts": 20, "host_buckets": 26880,
             "first_seen": "2026-01-05T00:00:00Z", "last_seen": "2026-01-18T23:45:00Z",
             "rarity": 0.0, "host_buckets_on_host": 0},
            {"name": "nginx", "path": "/usr/sbin/nginx", "hosts": 150, "host_buckets": 80640,
             "first_seen": "2026-01-05T00:00:00Z", "last_seen": "2026-01-18T23:45:00Z",
             "rarity": 0.0, "host_buckets_on_host": 1344},
        ],
    }  # fmt: skip
    doc.update(changes)
    return doc


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


class SnapshotServer:
    """GET /v1/snapshot with a token, an ETag and an optional delay or status."""

    def __init__(self, body: bytes) -> None:
        self.body, self.delay, self.status = body, 0.0, 200
        self.requests: list[dict[str, str]] = []
        owner = self

        class Handler_(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append({"path": self.path, **dict(self.headers.items())})
                time.sleep(owner.delay)
                if self.headers.get("Authorization") != "Bearer tok":
                    self.send_response(401)
                    self.end_headers()
                    return
                if owner.status != 200:
                    self.send_response(owner.status)
                    self.end_headers()
                    return
                if self.headers.get("If-None-Match") == '"v1"':
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler_)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/snapshot"

    def __enter__(self) -> SnapshotServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delay = 0
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


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

    from extension.wire import encode_call_reply, encode_rows

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
