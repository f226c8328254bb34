"""`POST /v1/shard` checks what it is asked before any work (issue 30): the bucket span
and history must be the shard's own (another span would fold the whole store again),
arguments are typed and bounded, the body is limited and parsed off the event loop. A
bad request is a 400 naming the argument and never marks the store failing."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from support.osquery_lines import T0, connection_line
from support.serve_process import SHARD_TOKEN, ServerProcess

from rarenet.baseline.detect.remote import SHARD_OPS, RemoteSource
from rarenet.baseline.detect.source import LocalSource
from rarenet.baseline.serve.shard_args import OPS
from rarenet.baseline.store import Store
from rarenet.baseline.store.deadline import TookTooLong, deadline

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {SHARD_TOKEN}"}


def ask(server: ServerProcess, body: Any, **kw: Any) -> requests.Response:
    kw.setdefault("json", body)
    return requests.post(f"{server.url}/v1/shard", headers=AUTH, timeout=120, **kw)


def presence_rows(db: Path) -> int:
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        return int(conn.execute("SELECT count(*) FROM presence").fetchone()[0])


def test_every_op_of_the_node_is_checked() -> None:
    assert set(OPS) == set(SHARD_OPS)


def test_bad_questions_are_400s_that_neither_refold_nor_fail_the_store(tmp_path: Path) -> None:
    lines = b"".join(
        connection_line(f"web-{n}", T0 + b * 900 + n, "nginx", "/usr/sbin/nginx", "192.0.2.1", 443)
        for b in range(8)
        for n in range(5)
    )
    with ServerProcess(tmp_path, extra_toml='[detect]\nrole = "shard"\n', scoped=True) as server:
        assert server.post(lines).status_code == 200
        assert ask(server, {"op": "refresh", "args": {"span": 900}}).status_code == 200
        folded = presence_rows(server.db)
        assert folded == 40
        bad: list[tuple[Any, str]] = [
            *(({"op": "refresh", "args": {"span": s}}, "span must be this shard's") for s in
              (-900, 1, 2, 3, 5, 7, 11)),
            *(({"op": "refresh", "args": {"span": s}}, "span must be a whole number") for s in
              (1.5, "900", True, None)),
            ({"op": "detail", "args": {"first_id": {}}}, "first_id must be a whole number"),
            ({"op": "detail", "args": {}}, "detail takes exactly ['first_id']"),
            ({"op": "detail", "args": {"first_id": 1, "x": 2}}, "detail takes exactly"),
            ({"op": "candidates", "args": {"span": 900, "low": 0, "high": 10**12}},
             "must be unix seconds"),
            ({"op": "candidates", "args": {"span": 900, "low": T0, "high": T0 + 10**9}},
             "must be a window of at most history"),
            ({"op": "key_buckets", "args": {"span": 900, "ranges": [["file", "x", 0, 1]]}},
             'ranges[0][0] must be "path" or "name"'),
            ({"op": "pair_stats", "args": {"span": 900, "history": 60, "rows": [], "rare": []}},
             "history must be this shard's"),
            ({"op": "drop_database", "args": {}}, "op must be one of"),
            ([1, 2, 3], 'body must be {"op"'),
        ]  # fmt: skip
        for body, why in bad:
            answer = ask(server, body)
            assert answer.status_code == 400, (body, answer.text)
            assert why in answer.json()["error"], (body, answer.text)
        assert presence_rows(server.db) == folded  # no span folded the store again
        health = server.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        # a body over the limit is refused while it streams; the server stays responsive
        started = time.monotonic()
        huge = ask(server, None, json=None, data=b"[" + b"1," * (40 << 20) + b"1]")
        assert huge.status_code == 413, huge.text[:200]
        assert time.monotonic() - started < 30
        assert server.get("/healthz").status_code == 200
        assert ask(server, {"op": "fold_mark", "args": {"span": 900}}).json()["result"] > 0
        # the late-data questions over HTTP answer as the store itself does
        remote = RemoteSource(server.url, SHARD_TOKEN)
        with Store(server.db) as store:
            local = LocalSource(store)
            mark = local.fold_mark(900)
            bucket = T0 // 900 * 900 + 900
            assert remote.fold_mark(900) == mark
            week = (T0 - 86400, T0 + 86400)
            assert remote.backlog(900, *week, mark) == local.backlog(900, *week, mark)
            queued = [list(row) for row in local.pending_candidates(900, bucket, mark)]
            assert len(queued) == 5 and remote.pending_candidates(900, bucket, mark) == queued
            assert remote.settle(900, bucket, bucket + 900, mark) == 5
            assert local.backlog(900, bucket, bucket + 900, mark) == []


def test_a_question_past_shard_timeout_is_stopped_and_the_shard_stays_healthy(
    tmp_path: Path,
) -> None:
    """A million valid keys take a shard seconds of SQL; with `shard_timeout = "1s"` the work
    stops at the limit (a 503 naming the setting), /healthz stays ok, the next question
    is answered, and questions beyond two at a time are turned away."""
    extra = '[detect]\nrole = "shard"\nshard_timeout = "1s"\n'
    keys = [["path", f"/usr/bin/x{i}", T0 // 900 * 900] for i in range(1_000_000)]
    heavy = orjson.dumps({"op": "hosts_in_bucket", "args": {"span": 900, "keys": keys}})
    with ServerProcess(tmp_path, extra_toml=extra, scoped=True) as server:
        answer = ask(server, None, data=heavy)  # encoded once: 40 MB of JSON
        assert answer.status_code == 503, answer.text[:200]
        assert "hosts_in_bucket stopped after 1 s ([detect] shard_timeout)" in answer.text
        health = server.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        light = {"op": "hosts_in_bucket", "args": {"span": 900, "keys": keys[:3]}}
        assert ask(server, light).json()["result"] == [0, 0, 0]
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: ask(server, None, data=heavy), range(3)))
        busy = [a for a in answers if "questions at a time" in a.text]
        assert busy and all(a.status_code == 503 for a in answers), [a.text for a in answers]
        assert server.get("/healthz").json()["status"] == "ok"


def test_the_deadline_stops_a_long_statement_and_refuses_the_next(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db") as store:
        endless = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
        )
        started = time.monotonic()
        with pytest.raises(TookTooLong), deadline(store.conn, 0.2):
            store.conn.execute(endless).fetchone()
        assert time.monotonic() - started < 5
        with pytest.raises(TookTooLong), deadline(store.conn, 0.2):
            for _ in range(10**8):  # short statements, each under the progress handler's step
                store.conn.execute("SELECT 1").fetchone()
        assert store.conn.execute("SELECT 2").fetchone() == (2,)  # no limit outside
