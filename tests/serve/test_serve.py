"""`rarenet serve` end to end: a real subprocess on a free loopback port, real HTTP."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import requests
from support.osquery_lines import T0, batch, event, fleet_body, line, socket_line, socket_row
from support.serve_process import METRICS_TOKEN, TOKEN, ServerProcess

from rarenet.baseline.config import load_config
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.store import Store

pytestmark = pytest.mark.slow  # real servers and their timeouts: `make test`, not `make check`


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("serve"), max_body="64KiB")
    with server:
        yield server


def rows(db: Path, sql: str = "SELECT count(*) FROM observations") -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def count(db: Path) -> int:
    return int(rows(db)[0][0])  # type: ignore[call-overload]


def fleet(host: str, unix: int, ports: range) -> bytes:
    """A Fleet webhook body: one differential event per port, plus one loopback row."""
    details = [event(socket_row(remote_port=p, pid=p), host=host, unix=unix) for p in ports]
    details.append(event(socket_row(remote_address="127.0.0.1"), host=host, unix=unix))
    return orjson.dumps(fleet_body(details))


def test_fleet_body_becomes_observations_and_twice_stores_nothing_new(
    srv: ServerProcess,
) -> None:
    before = count(srv.db)
    body = fleet("web-fleet", T0, range(1000, 1005))
    first = srv.post(body, headers=srv.headers(**{"Content-Type": "application/json"}))
    assert first.status_code == 200, first.text
    assert first.json() == {
        "accepted": 5,
        "duplicates": 0,
        "rejected": 0,
        "quarantined": 0,
        "filtered": 1,
        "skipped": 0,
        "errors": [],
    }
    stored = rows(
        srv.db,
        "SELECT host, name, path, remote_port, time FROM observations "
        "WHERE host = 'web-fleet' ORDER BY remote_port",
    )
    assert stored == [("web-fleet", "bash", "/usr/bin/bash", p, T0) for p in range(1000, 1005)]
    again = srv.post(body)
    assert again.status_code == 200
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 5)
    assert count(srv.db) == before + 5


def test_ndjson_array_batch_and_gzip(srv: ServerProcess) -> None:
    ndjson = b"".join(socket_line("nd", T0, remote_port=p) for p in (1, 2))
    assert srv.post(ndjson).json()["accepted"] == 2
    array = orjson.dumps([batch([socket_row(remote_port=p) for p in (3, 4, 5)], host="arr")])
    assert srv.post(array).json()["accepted"] == 3
    zipped = gzip.compress(fleet("gz", T0, range(10, 13)))
    by_header = srv.post(zipped, headers=srv.headers(**{"Content-Encoding": "gzip"}))
    assert by_header.json()["accepted"] == 3
    by_magic = srv.post(gzip.compress(fleet("gz", T0, range(20, 22))))  # no header: magic bytes
    assert by_magic.json()["accepted"] == 2
    pretty = orjson.dumps(
        fleet_body([event(socket_row(remote_port=31), host="pretty")]), option=orjson.OPT_INDENT_2
    )
    assert srv.post(pretty).json()["accepted"] == 1


def test_tokens_header_query_and_never_logged(srv: ServerProcess) -> None:
    body = fleet("auth", T0, range(1, 2))
    missing = requests.post(srv.url + "/v1/ingest", data=body, timeout=30)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = srv.post(body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    via_query = requests.post(srv.url + f"/v1/ingest?token={TOKEN}", data=body, timeout=30)
    assert via_query.status_code == 200
    for path in ("/v1/snapshot", "/v1/signals", "/metrics"):
        assert requests.get(srv.url + path, timeout=30).status_code == 401, path
    for path in ("/healthz", "/openapi.json"):
        assert requests.get(srv.url + path, timeout=30).status_code == 200, path
    time.sleep(0.2)  # the access log line is written after the response
    logged = srv.output()
    assert "token=REDACTED" in logged and TOKEN not in logged


def test_token_never_logged_however_the_query_spells_its_key(srv: ServerProcess) -> None:
    # Starlette decodes the query key (`%74oken` is `token`) but uvicorn logs it raw.
    # A raw socket: `requests` would normalise the %-escapes before sending.
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    answers = {}
    for query in (f"%74oken={TOKEN}", f"tok%65n={TOKEN}", f"token%3D{TOKEN}", f"a=1;token={TOKEN}"):
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(f"GET /v1/snapshot?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            answers[query] = conn.recv(64).split(b"\r\n")[0]
    assert answers[f"%74oken={TOKEN}"] == b"HTTP/1.1 200 OK"
    assert requests.get(f"{srv.url}/v1/{TOKEN}", timeout=30).status_code == 404
    _wait_for(lambda: '"GET /v1/REDACTED HTTP/1.1" 404' in srv.output())  # the last line
    _wait_for(lambda: "a=1;token=REDACTED" in srv.output())
    assert TOKEN not in srv.output()


@pytest.mark.slow
def test_connections_without_request_headers_are_dropped(srv: ServerProcess) -> None:
    # uvicorn keeps a silent or dribbling connection forever; MAX_CONNECTIONS of them
    # (no token needed to open one) made every post a 503.
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    silent = socket.create_connection((host, int(port)), timeout=30)
    dribbling = socket.create_connection((host, int(port)), timeout=30)
    began = time.monotonic()
    try:
        dribbling.sendall(b"POST /v1/ingest HTTP/1.1\r\n")
        for _ in range(4):  # keep it busy past uvicorn's keep-alive timer (5 s)
            time.sleep(2)
            dribbling.sendall(b"X-Slow: 1\r\n")
        assert srv.get("/healthz").status_code == 200  # others are served meanwhile
        assert silent.recv(1) == b""  # closed by the server (recv waits at most 30 s)
        assert dribbling.recv(1) == b""
        assert time.monotonic() - began < 25
    finally:
        silent.close()
        dribbling.close()


def test_over_max_body_is_413_even_when_gzip_hides_it(srv: ServerProcess) -> None:
    big = b"".join(
        line(event(socket_row(remote_port=p, cmdline="x" * 500), host="big")) for p in range(200)
    )
    assert len(big) > 64 * 1024
    assert srv.post(big).status_code == 413
    huge = b"[" + b" " * (8 << 20) + b"]"  # far over the limit: cut off, not read
    # (the server may close the connection before the client has finished sending)
    with contextlib.suppress(requests.ConnectionError):
        assert srv.post(huge).status_code == 413
    bomb = gzip.compress(b" " * (50 << 20))  # 50 MiB of spaces, ~50 KiB compressed
    response = srv.post(bomb, headers=srv.headers(**{"Content-Encoding": "gzip"}))
    assert response.status_code == 413 and "max_body" in response.json()["error"]
    assert srv.get("/healthz").status_code == 200


def test_malformed_is_400_with_the_first_errors_and_quarantined(srv: ServerProcess) -> None:
    garbage = srv.post(b"{not json\nstill not\n")
    assert garbage.status_code == 400
    errors = garbage.json()["errors"]
    assert [e["line"] for e in errors] == [1, 2] and "not valid JSON" in errors[0]["reason"]
    assert srv.post(b"").status_code == 400
    assert srv.post(b"  \n ").status_code == 400
    mixed = line(event(socket_row(remote_port=7), host="mixed")) + b'{"truncated": \n'
    partial = srv.post(mixed)
    assert partial.status_code == 200
    assert (partial.json()["accepted"], partial.json()["rejected"]) == (1, 1)
    assert partial.json()["errors"][0]["line"] == 2
    bad_item = fleet_body(
        [event(socket_row(remote_port=8), host="items"), {"name": "x", "columns": 5}]
    )
    itemised = srv.post(orjson.dumps(bad_item))
    assert itemised.status_code == 200 and itemised.json()["accepted"] == 1
    assert itemised.json()["errors"][0]["reason"].startswith("details[1]: ")
    quarantined = rows(srv.db, "SELECT source, line, reason FROM quarantine ORDER BY id")
    assert any(source == "http:127.0.0.1" and line_no == 2 for source, line_no, _ in quarantined)
    assert any(str(reason).startswith("details[1]: ") for _, _, reason in quarantined)


def test_hostile_bodies_never_5xx(srv: ServerProcess) -> None:
    cases: list[tuple[bytes, dict[str, str], int]] = [
        (b"\xff\xfe\x00garbage\x80", {}, 400),
        (b"[" * 5000 + b"]" * 5000, {}, 400),
        (b'{"details": ' * 3000 + b"[]" + b"}" * 3000, {}, 400),
        (b"--x\r\n\r\n{}\r\n--x--", {"Content-Type": "multipart/form-data; boundary=x"}, 415),
        (b"{}", {"Content-Encoding": "br"}, 415),
        (b"\x1f\x8b\x08\x00garbage", {}, 400),
        (gzip.compress(b"[]")[:-6], {"Content-Encoding": "gzip"}, 400),
        (b"[]", {}, 200),
        (b"12345", {}, 400),
        (b"null", {}, 400),
    ]
    for body, extra, status in cases:
        response = srv.post(body, headers=srv.headers(**extra))
        assert response.status_code == status, (body[:40], response.text)
    utf8 = event(socket_row(remote_port=9, cmdline="ok"), host="utf8")
    raw = orjson.dumps(utf8).replace(b'"cmdline":"ok"', b'"cmdline":"o\xffk"')
    accepted = srv.post(raw)
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 1


def test_metrics_move(srv: ServerProcess) -> None:
    accepted = srv.metric("rarenet_ingest_rows_total", 'result="accepted"')
    duplicate = srv.metric("rarenet_ingest_rows_total", 'result="duplicate"')
    ok_requests = srv.metric("rarenet_ingest_requests_total", 'code="200"')
    body = fleet("metrics", T0, range(1, 4))
    srv.post(body)
    srv.post(body)
    assert srv.metric("rarenet_ingest_rows_total", 'result="accepted"') == accepted + 3
    assert srv.metric("rarenet_ingest_rows_total", 'result="duplicate"') == duplicate + 3
    assert srv.metric("rarenet_ingest_requests_total", 'code="200"') == ok_requests + 2
    text = srv.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    for name in (
        "rarenet_ingest_lag_seconds ",
        "rarenet_detection_runs_total",
        "rarenet_detection_duration_seconds_count",
        "rarenet_signals",
        "rarenet_delivery_failures",
        'rarenet_build_info{version="',
    ):
        assert name in text, name
    assert srv.metric("rarenet_detection_runs_total", 'status="learning"') >= 1  # run at start


def test_snapshot_etag_and_304(srv: ServerProcess) -> None:
    srv.post(fleet("snap-host", T0, range(50, 53)))
    first = srv.get("/v1/snapshot?host=snap-host")
    assert first.status_code == 200 and first.headers["Content-Type"] == "application/json"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    document = first.json()
    assert (document["version"], document["host"]) == (1, "snap-host")
    assert all("host_buckets_on_host" in entry for entry in document["entries"])
    same = srv.get("/v1/snapshot?host=snap-host", headers=srv.headers(**{"If-None-Match": etag}))
    assert same.status_code == 304 and same.content == b"" and same.headers["ETag"] == etag
    weak = srv.get(
        "/v1/snapshot?host=snap-host", headers=srv.headers(**{"If-None-Match": "W/" + etag})
    )
    assert weak.status_code == 304
    other = srv.get("/v1/snapshot?host=other", headers=srv.headers(**{"If-None-Match": etag}))
    assert other.status_code == 200  # another host's counts, another ETag
    via_query = requests.get(srv.url + f"/v1/snapshot?token={TOKEN}", timeout=30)
    assert via_query.status_code == 200 and via_query.json()["host"] is None


def test_signals_listed(srv: ServerProcess) -> None:
    assert srv.post(fleet("sig-host", T0 + 60, range(60, 62))).status_code == 200
    config = load_config(None, env={})
    settings = config.detect.__class__(warmup_buckets=0, threshold=0)
    with Store(srv.db) as store:
        run = detect_once(store, settings, T0 + 1800)
    assert srv.get("/v1/signals").status_code == 401  # the ingest token reads no signals
    srv.add_user("signal-reader", "viewer")
    reader = {"Authorization": f"Bearer {srv.api_token('signal-reader')}"}

    def listing(query: str) -> requests.Response:
        return srv.get(f"/v1/signals{query}", headers=reader)

    listed = listing("?limit=1000")
    assert listed.status_code == 200
    signals = listed.json()["signals"]
    assert run.signals >= 1
    assert {doc["id"] for doc in run.documents} <= {str(sig.get("id")) for sig in signals}
    assert listing("?limit=0").status_code == 400
    assert listing("?since=yesterday").status_code == 400
    assert listing("?since=" + "9" * 30).status_code == 400  # was a 500
    assert listing("?state=bogus").status_code == 400
    assert listing("?state=none&since=2026-01-01T00:00:00Z").status_code == 200


def test_refuses_non_loopback_without_tokens(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rarenet", "serve", "--db", str(tmp_path / "r.db"),
         "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0 without tokens" in proc.stderr
    assert "[ingest] tokens" in proc.stderr


@pytest.mark.parametrize("weak", ["  ", "x", "fifteen-chars15"])
def test_an_empty_or_short_token_is_refused(tmp_path: Path, weak: str) -> None:
    server = ServerProcess(tmp_path, tokens=("a-good-long-token-0123", weak))
    proc = subprocess.run(server.command(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "[ingest] tokens" in proc.stderr
    assert f"token #2 is {len(weak.strip())} characters; at least 16" in proc.stderr
    assert "fifteen-chars15" not in proc.stderr  # never echoed


def test_padded_token_matches_the_bearer_header_and_ipv6_url(tmp_path: Path) -> None:
    ipv6 = _loopback_ipv6()
    args = ("--host", "[::1]") if ipv6 else ()
    with ServerProcess(tmp_path, tokens=(f"  {TOKEN} ",), args=args) as server:
        if ipv6:
            assert server.url.startswith("http://[::1]:")  # was http://[[::1]]:
        assert server.get("/v1/snapshot").status_code == 200  # Authorization: Bearer TOKEN
        assert server.get("/v1/snapshot", headers={"Authorization": "Bearer x"}).status_code == 401
        assert server.stop() == 0


def _loopback_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_ctrl_c_to_the_process_group_stops_every_child_quietly(tmp_path: Path) -> None:
    # Ctrl-C reaches the whole process group, systemd's SIGTERM the whole control group:
    # the parse workers and the detection child must leave stopping to the server.
    server = ServerProcess(tmp_path, new_session=True)
    with server:
        _wait_for(lambda: "learning: " in server.output())  # the detection child ran
        children = server.children()
        detection = [c for c in children if _spawned(c) and c not in _main_thread_children(server)]
        assert detection, children
        for child in children:
            status = Path(f"/proc/{child}/status").read_text()
            ignored = int(re.search(r"SigIgn:\s+([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
            for sig in (signal.SIGINT, signal.SIGTERM):
                assert ignored & (1 << (sig - 1)), (child, sig)
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGINT)
        assert server.proc.wait(timeout=60) == 0
        output = server.output()
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, output


@pytest.mark.parametrize("when", ["starting", "running"])
def test_children_exit_when_the_server_is_killed(tmp_path: Path, when: str) -> None:
    # kill -9 (or the OOM killer) cannot stop the children: they must notice and go.
    # The detection child once stayed forever (with the resource tracker it holds open),
    # and one started just before the kill watched init, its new parent, forever.
    server = ServerProcess(tmp_path, new_session=True)
    with server:
        assert server.proc is not None
        if when == "running":
            _wait_for(lambda: "learning: " in server.output())  # the detection child ran
            assert [c for c in server.children() if c not in _main_thread_children(server)]
        server.proc.kill()  # "starting": right after it printed where it listens
        server.proc.wait(timeout=30)
        _wait_for(lambda: not _session(server.proc.pid), timeout=20)


def _session(sid: int) -> list[int]:
    """Live processes of session `sid` (the server's own, with start_new_session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp sid
                found.append(int(entry.name))
    return found


def _spawned(pid: int) -> bool:
    return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()


def _main_thread_children(server: ServerProcess) -> set[int]:
    assert server.proc is not None
    pid = server.proc.pid
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_tails_configured_files_with_checkpoints(tmp_path: Path) -> None:
    log = tmp_path / "osqueryd.results.log"
    log.write_bytes(b"".join(line(event(socket_row(remote_port=p), host="tail")) for p in (1, 2)))
    server = ServerProcess(tmp_path, ingest_toml=f'files = ["{tmp_path}/*.results.log"]')
    with server:
        _wait_for(lambda: count(server.db) == 2)
        with log.open("ab") as handle:
            handle.write(line(event(socket_row(remote_port=3), host="tail")))
        _wait_for(lambda: count(server.db) == 3)
        assert server.stop() == 0
    assert rows(server.db, "SELECT count(*) FROM checkpoints") == [(1,)]


def test_local_collects_this_host(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, tokens=(), args=("--local",))
    with server:
        _wait_for(lambda: "collect: " in server.output())
        assert "sockets on this host" in server.output()
        assert server.metric("rarenet_job_errors_total", 'job="collect"') == 0
        assert server.stop(signal.SIGINT) == 0


def test_sigterm_mid_posts_exits_0_with_every_acknowledged_row(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    acknowledged: list[int] = []
    with server:

        def post(worker: int) -> None:
            for i in range(10_000):
                try:
                    response = server.post(fleet(f"term-{worker}-{i}", T0, range(1, 101)))
                except requests.ConnectionError:
                    return
                if response.status_code != 200:
                    return
                acknowledged.append(response.json()["accepted"])

        threads = [threading.Thread(target=post, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        _wait_for(lambda: len(acknowledged) >= 8)
        assert server.stop(signal.SIGTERM) == 0
        for thread in threads:
            thread.join(timeout=60)
        assert "stopped; every acknowledged request is committed" in server.output()
    assert sum(acknowledged) == count(server.db) and set(acknowledged) == {100}


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.mark.slow
def test_demo_replays_a_fleet_through_the_server_and_shows_signals(tmp_path: Path) -> None:
    # The user's own settings in the environment must not reach the demo's server: with
    # RARENET_DB it once posted the synthetic fleet into that (real) store.
    real = tmp_path / "real.db"
    env = {
        **os.environ,
        "RARENET_DB": str(real),
        "RARENET_STORE_PATH": str(real),
        "RARENET_INGEST_TOKENS": "the-users-own-token",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rarenet", "demo", "--hosts", "20", "--days", "1",
         "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not real.exists()
    assert time.monotonic() - started < 60
    out = proc.stdout
    assert "listening on http://127.0.0.1:" in out and "learning: " in out
    assert "[injected attack]" in out and "server exited 0" in out
    caught = re.search(r"injected attacks caught: (\d+)/(\d+)", out)
    assert caught and int(caught.group(1)) >= 1


def test_a_killed_parse_worker_is_replaced(tmp_path: Path) -> None:
    with ServerProcess(tmp_path) as server:
        assert server.proc is not None
        pid = server.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        workers = [
            int(child)
            for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        ]
        assert workers
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        time.sleep(0.5)
        statuses = [
            server.post(fleet(f"after-kill-{i}", T0, range(1, 3))).status_code for i in range(3)
        ]
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}
        assert server.get("/healthz").status_code == 200
        assert server.stop() == 0
