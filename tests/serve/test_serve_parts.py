"""The pieces of `rarenet serve` without HTTP: bodies, tokens, ETags, group commit."""

from __future__ import annotations

import gzip
import logging
import threading
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.osquery_lines import T0, batch, event, fleet_body, line, socket_line, socket_row

from rarenet.baseline.access.credentials import Credentials, Purpose
from rarenet.baseline.config import Config, load_config
from rarenet.baseline.errors import ConfigError
from rarenet.baseline.ingest.chunks import build_parser
from rarenet.baseline.serve.auth import (
    RedactTokens,
    check_bind,
    is_loopback,
    presented_token,
    redact,
    token_ok,
)
from rarenet.baseline.serve.bodies import BodyError, decode, parse_body
from rarenet.baseline.serve.snapshots import etag_matches
from rarenet.baseline.serve.writer import CommitWriter, WriterClosed
from rarenet.baseline.store import Store

LIMIT = 1 << 20


def parsed(config: Config, body: bytes) -> tuple[int, list[dict[str, object]]]:
    result = parse_body(build_parser(config), body, LIMIT)
    return len(result.result.observations), result.errors


def test_every_body_shape_is_detected(config: Config) -> None:
    rows = [event(socket_row(remote_port=p), unix=T0) for p in (1, 2, 3)]
    assert parsed(config, b"".join(line(r) for r in rows)) == (3, [])  # NDJSON
    assert parsed(config, b"".join(line(r) for r in rows).replace(b"\n", b"\r\n")) == (3, [])
    assert parsed(config, orjson.dumps(rows)) == (3, [])  # JSON array
    assert parsed(config, orjson.dumps(fleet_body(rows))) == (3, [])  # Fleet body
    pretty = orjson.dumps(fleet_body(rows), option=orjson.OPT_INDENT_2)
    assert parsed(config, pretty) == (3, [])  # a pretty-printed document is one document
    assert parsed(config, line(batch([socket_row(), socket_row(pid=7)]))) == (2, [])
    ndjson_of_bodies = line(fleet_body(rows[:1])) + line(fleet_body(rows[1:]))
    assert parsed(config, ndjson_of_bodies) == (3, [])


def test_errors_name_the_line_or_the_item(config: Config) -> None:
    good = line(event(socket_row()))
    count, errors = parsed(config, good + b"\n{bad\n" + good)
    assert count == 2 and [e["line"] for e in errors] == [3]
    body = fleet_body([event(socket_row()), {"name": "q"}, event(socket_row(remote_address="x"))])
    count, errors = parsed(config, orjson.dumps(body))
    assert count == 1
    assert [str(e["reason"]).split(":")[0] for e in errors] == ["details[1]", "details[2]"]
    many = b"".join(b"{bad%d\n" % i for i in range(100))
    result = parse_body(build_parser(config), many, LIMIT)
    assert len(result.errors) == 20 and len(result.result.rejects) == 100
    assert result.nothing_usable
    with pytest.raises(BodyError) as empty:
        parse_body(build_parser(config), b" \n\t", LIMIT)
    assert empty.value.status == 400


def test_gzip_zlib_and_limits() -> None:
    data = b'{"x": 1}\n' * 100
    assert decode(gzip.compress(data), "gzip", LIMIT) == data
    assert decode(gzip.compress(data), "", LIMIT) == data  # magic bytes
    assert decode(zlib.compress(data), "deflate", LIMIT) == data
    assert decode(gzip.compress(data) + gzip.compress(data), "gzip", LIMIT) == data * 2
    assert decode(data, "identity", LIMIT) == data
    for raw, encoding, status in [
        (gzip.compress(b"a" * 5000), "gzip", 413),
        (gzip.compress(data)[:-5], "gzip", 400),
        (b"\x1f\x8bnot gzip", "", 400),
        (data, "br", 415),
    ]:
        with pytest.raises(BodyError) as caught:
            decode(raw, encoding, 4096)
        assert caught.value.status == status


def test_tokens_constant_time_over_all_and_redacted() -> None:
    assert token_ok([], None)  # no tokens: loopback-only server, open
    assert token_ok(["a", "b"], "b") and not token_ok(["a", "b"], "c")
    assert not token_ok(["a"], None) and not token_ok(["a"], "")
    assert not token_ok(["a"], "\udcff")
    assert presented_token("Bearer t1", "t2") == "t1"
    assert presented_token("bearer  t1 ", None) == "t1"
    assert presented_token("Basic xyz", "t2") == "t2"
    assert presented_token(None, None) is None
    assert redact("/v1/ingest?token=abc&x=1") == "/v1/ingest?token=REDACTED&x=1"
    assert redact("/v1/snapshot?host=h&token=abc") == "/v1/snapshot?host=h&token=REDACTED"
    record = logging.LogRecord("a", 20, "f", 1, '%s "%s"', ("peer", "/x?token=s"), None)
    RedactTokens().filter(record)
    assert record.getMessage() == 'peer "/x?token=REDACTED"'


@pytest.mark.parametrize(
    "query",
    ["%74oken=abc", "tok%65n=abc", "TOKEN=abc", "token%3Dabc", "a=1;token=abc", "x=1&Token=abc"],
)
def test_redacts_the_token_however_the_query_spells_its_key(query: str) -> None:
    # Starlette decodes `%74oken` to `token` (and accepts the token); the access log
    # shows the raw query, which once logged these in clear.
    redacted = redact(f'GET /metrics?{query} HTTP/1.1" 200')
    assert "abc" not in redacted and "REDACTED" in redacted
    assert redact("/v1/signals?limit=5&state=dead") == "/v1/signals?limit=5&state=dead"


def test_redacts_configured_tokens_anywhere_raw_or_encoded() -> None:
    secret = "s3cret/t+k"
    record = logging.LogRecord(
        "a", 20, "f", 1, "msg %(path)s", ({"path": "/x?q=s3cret%2Ft%2Bk"},), None
    )
    RedactTokens([secret]).filter(record)
    assert record.getMessage() == "msg /x?q=REDACTED"
    assert redact(f"bearer {secret} then s3cret%2Ft%2Bk", [secret]) == (
        "bearer REDACTED then REDACTED"
    )


def _credentials(**server: Any) -> Credentials:
    config = Config()
    tokens = server.pop("ingest", [])
    return Credentials.from_config(
        replace(
            config,
            ingest=replace(config.ingest, tokens=tokens),
            server=replace(config.server, **server),
        )
    )


def test_configured_tokens_are_stripped_and_never_short() -> None:
    # Bearer values are stripped on the way in, so a padded token could never match.
    long1, long2 = "t1-0123456789abcdef", "t2-0123456789abcdef"
    assert _credentials(ingest=[f" {long1} ", f"{long2}\n"]).ingest == (long1, long2)
    assert not _credentials().any_secret
    for weak in ("  ", "t", "x" * 15):
        with pytest.raises(ConfigError, match=r"token #2 is \d+ characters; at least 16"):
            _credentials(ingest=[long1, weak])
        with pytest.raises(ConfigError, match=r"\[server\] metrics_tokens"):
            _credentials(metrics_tokens=[long1, weak])


def test_each_secret_opens_its_own_purpose_only() -> None:
    ingest, snapshot, metrics = "ingest-0123456789ab", "snapshot-0123456789", "metrics-0123456789a"
    scoped = _credentials(ingest=[ingest], snapshot_tokens=[snapshot], metrics_tokens=[metrics])
    allowed = {
        (purpose, name)
        for purpose in Purpose
        for name, secret in (("ingest", ingest), ("snapshot", snapshot), ("metrics", metrics))
        if scoped.accepts(purpose, secret)
    }
    assert allowed == {
        (Purpose.INGEST, "ingest"), (Purpose.SNAPSHOT, "snapshot"), (Purpose.METRICS, "metrics")
    }  # fmt: skip
    assert not scoped.accepts(Purpose.SHARD, None) and not scoped.snapshot_from_ingest
    older = _credentials(ingest=[ingest])  # no snapshot secret: hosts still use the ingest one
    assert older.snapshot_from_ingest and older.accepts(Purpose.SNAPSHOT, ingest)
    assert not older.accepts(Purpose.METRICS, ingest) and not older.accepts(Purpose.SHARD, ingest)
    with pytest.raises(ConfigError, match="user_header"):
        _credentials(trusted_proxies=["10.0.0.1"])
    with pytest.raises(ConfigError, match="trusted_proxies"):
        _credentials(trusted_proxies=["not-an-address"], user_header="X-User")
    proxy = _credentials(trusted_proxies=["10.0.0.0/30"], user_header="X-Forwarded-User")
    assert proxy.trusts_proxy("10.0.0.2") and not proxy.trusts_proxy("10.0.0.9")
    assert not proxy.trusts_proxy("garbage") and proxy.user_header == "x-forwarded-user"


@pytest.mark.parametrize("weak", ["q", "fifteen-chars15"])
def test_config_load_refuses_a_short_token(tmp_path: Path, weak: str) -> None:
    path = tmp_path / "weak.toml"
    path.write_text(f'[store]\npath = "x.db"\n\n[ingest]\ntokens = ["{weak}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert "weak.toml:5: [ingest] tokens" in str(caught.value)
    assert "at least 16" in str(caught.value) and f'{weak}"' not in str(caught.value)
    with pytest.raises(ConfigError, match="RARENET_INGEST_TOKENS"):
        load_config(None, env={"RARENET_INGEST_TOKENS": weak})


@pytest.mark.parametrize(
    "query",
    ["token%00=", "%00token=", "to%0Aken=", "%20token=", "access_token=", "x=1&TOK%45N%20="],
)
def test_redacts_a_mangled_token_key_and_a_token_under_any_key(query: str) -> None:
    secret = "a-long-secret-token-value"
    # The value is sent URL-encoded, so the literal-token pass alone cannot find it.
    encoded = "".join(f"%{ord(c):02X}" if c in "aeiou" else c for c in secret)
    line = redact(f'GET /v1/snapshot?host=h&{query}{encoded} HTTP/1.1" 401', [secret])
    assert "secret" not in line and "REDACTED" in line and "host=h" in line
    line = redact(f"GET /v1/snapshot?host=h&other={encoded}", [secret])
    assert line == "GET /v1/snapshot?host=h&other=REDACTED"


def test_loopback_rule() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
    check_bind("127.0.0.1", [])
    check_bind("0.0.0.0", ["t"])
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_bind("0.0.0.0", [])


def test_etag_matching() -> None:
    tag = '"abc"'
    assert etag_matches('"abc"', tag) and etag_matches('W/"abc"', tag)
    assert etag_matches('"x", "abc"', tag) and etag_matches("*", tag)
    assert not etag_matches('"abd"', tag) and not etag_matches(None, tag)


def test_group_commit_counts_each_request_and_shares_transactions(
    config: Config, tmp_path: Path
) -> None:
    db = tmp_path / "w.db"
    Store(db).close()
    writer = CommitWriter(str(db))
    writer.start()
    parser = build_parser(config)
    bodies = [socket_line("g", T0, remote_port=1 + (i % 10)) for i in range(40)]
    futures = []
    start = threading.Barrier(8)

    def submit(part: list[bytes]) -> None:
        start.wait()
        for body in part:
            futures.append(writer.submit("test", parse_body(parser, body, LIMIT).result))

    threads = [threading.Thread(target=submit, args=(bodies[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = [future.result(timeout=30) for future in futures]
    writer.close()
    assert sum(c.inserted for c in counts) == 10  # ten distinct rows, each stored once
    assert sum(c.duplicates for c in counts) == 30
    assert writer.commits <= 40
    with pytest.raises(WriterClosed):
        writer.submit("late", parse_body(parser, bodies[0], LIMIT).result).result(timeout=5)
    with Store(db) as store:
        assert store.summary().observations == 10


def test_snapshot_cache_per_run_and_stable_etags(config: Config, tmp_path: Path) -> None:
    from rarenet.baseline.detect.presence import refresh_presence
    from rarenet.baseline.detect.rule import detect_once
    from rarenet.baseline.detect.snapshot import build_snapshot
    from rarenet.baseline.serve.snapshots import SnapshotCache

    parser = build_parser(config)
    with Store(tmp_path / "s.db") as store:
        first = parse_body(parser, socket_line("h1", T0), LIMIT).result
        with store.transaction():
            store.insert_observations(first.observations)
        cache = SnapshotCache(config.detect)
        snap = cache.get(store, "h1")
        expected = build_snapshot(store, config.detect, "h1")
        served = orjson.loads(snap.body)
        assert {k: v for k, v in served.items() if k != "generated_at"} == {
            k: v for k, v in expected.items() if k != "generated_at"
        }
        assert cache.get(store, "h1", snap.etag).not_modified
        assert not cache.get(store, "h2", snap.etag).not_modified  # another host
        later = event(socket_row(name="curl", path="/usr/bin/curl"), host="h1", unix=T0 + 60)
        more = parse_body(parser, line(later), LIMIT).result
        with store.transaction():
            store.insert_observations(more.observations)
        refresh_presence(store, int(config.detect.bucket_span))
        assert cache.get(store, "h1", snap.etag).not_modified  # same run: same snapshot
        detect_once(store, config.detect, T0 + 900)
        fresh = cache.get(store, "h1", snap.etag)
        assert not fresh.not_modified and fresh.etag != snap.etag and cache.builds == 2
        assert "/usr/bin/curl" in {e["path"] for e in orjson.loads(fresh.body)["entries"]}
