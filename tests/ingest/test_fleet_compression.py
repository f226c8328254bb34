"""Fleet's NATS destination, as it publishes (issue 30): JetStream async publishes with
no message id, each log optionally compressed (`nats.compression`: gzip, snappy as a
raw block, zstd; header `Content-Encoding`). rarenet stores every log whatever the
encoding, and quarantines — naming why, never expanding past `[ingest] max_body` — a
message that is not valid in its encoding or would decompress into a bomb."""

from __future__ import annotations

import asyncio
import gzip
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import cramjam
import nats
import orjson
import pytest
from support.nats_server import Cluster, add_stream, stored_rows
from support.osquery_lines import T0, connection_line

from rarenet.baseline.config import load_config
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.store import Store

pytestmark = pytest.mark.slow
STREAM = "OSQUERY"
ENCODERS = {
    "": lambda data: data,
    "gzip": gzip.compress,
    "snappy": lambda data: bytes(cramjam.snappy.compress_raw(data)),
    "zstd": lambda data: bytes(cramjam.zstd.compress(data)),
}


async def publish_like_fleet(url: str, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
    """JetStream async publishes, no Nats-Msg-Id, then wait for every ack."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for subject, data, headers in messages:
            await js.publish_async(subject, data, headers=headers or None)
        await asyncio.wait_for(js.publish_async_completed(), 30)
    finally:
        await nc.close()


def test_every_fleet_encoding_is_stored_and_bombs_are_quarantined(tmp_path: Path) -> None:
    lines = [
        connection_line(f"web-{n % 7}", T0 + n, "nginx", "/usr/sbin/nginx", "192.0.2.1", 443 + n)
        for n in range(400)
    ]
    messages = []
    for n, line in enumerate(lines):
        encoding = list(ENCODERS)[n % len(ENCODERS)]
        headers = {"Content-Type": "application/json"}
        if encoding:
            headers["Content-Encoding"] = encoding
        messages.append(
            (f"osquery.result.web-{n % 7}", ENCODERS[encoding](line.rstrip(b"\n")), headers)
        )
    bomb = b"{" + b" " * (64 << 20) + b"}"  # 64 MiB of JSON, over the 16 MiB max_body
    messages += [
        ("osquery.result.web-x", gzip.compress(bomb), {"Content-Encoding": "gzip"}),
        ("osquery.result.web-x", bytes(cramjam.zstd.compress(bomb)), {"Content-Encoding": "zstd"}),
        ("osquery.result.web-x", bytes(cramjam.snappy.compress_raw(bomb)), {"Content-Encoding": "snappy"}),
        ("osquery.result.web-x", b"not gzip at all", {"Content-Encoding": "gzip"}),
        ("osquery.result.web-x", lines[0], {"Content-Encoding": "br"}),
    ]  # fmt: skip
    with Cluster(tmp_path) as cluster:
        asyncio.run(add_stream(cluster.urls, STREAM, ["osquery.result.>"]))
        asyncio.run(publish_like_fleet(cluster.urls[0], messages))
        db = tmp_path / "fleet.db"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}
        done = subprocess.run(
            [sys.executable, "-m", "rarenet", "consume", cluster.urls[0], "--stream", STREAM,
             "--db", str(db), "--idle-exit", "1", "--json"],
            capture_output=True, text=True, timeout=300, env=environ, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["messages"] == len(messages) and report["quarantined"] == 5, report
    reference = tmp_path / "reference.db"
    log = tmp_path / "plain.log"
    log.write_bytes(b"".join(lines))
    with Store(reference) as store:
        Ingester(store, load_config(None, env={})).ingest([str(log)])
    with closing(sqlite3.connect(db)) as got, closing(sqlite3.connect(reference)) as want:
        assert stored_rows(got) == stored_rows(want)
        reasons = [r for (r,) in got.execute("SELECT reason FROM quarantine ORDER BY line")]
    assert sum("decompresses to more than 16777216 bytes" in r for r in reasons) == 3, reasons
    assert any("not valid gzip" in r for r in reasons), reasons
    assert any("unknown Content-Encoding 'br'" in r for r in reasons), reasons


def test_consume_check_says_whether_the_stream_keeps_fleets_subject(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}

    def check(url: str, subject: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rarenet", "consume", url, "--stream", STREAM,
             "--check", subject],
            capture_output=True, text=True, timeout=120, env=environ, check=False,
        )  # fmt: skip

    with Cluster(tmp_path) as cluster:
        missing = check(cluster.urls[0], "osquery.result.web-01")
        assert missing.returncode == 3 and "does not exist" in missing.stderr, missing.stderr
        asyncio.run(add_stream(cluster.urls, STREAM, ["osquery.result.*"]))
        kept = check(cluster.urls[0], "osquery.result.web-01")
        assert kept.returncode == 0, kept.stderr
        assert (
            "osquery.result.web-01 is kept by the stream (subject osquery.result.*)" in kept.stdout
        )
        lost = check(cluster.urls[0], "osquery_results")  # Fleet's subject set differently
        assert lost.returncode == 3 and "does not cover 'osquery_results'" in lost.stderr
        assert "ignores the negative publish ack" in lost.stderr
