"""Hostile input: nothing crashes, every reject is quarantined with a clear reason,
and every good line around it is kept."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from support.osquery_lines import T0, envelope, event, line, socket_row

from rarenet.baseline.config import Config
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.store import Store

SQL = "x'); DROP TABLE observations; --"


def ingest_between_good_lines(
    tmp_path: Path, store: Store, config: Config, bad: bytes
) -> tuple[int, int, list[str]]:
    """Ingest good, bad, good; return (observations, rejected, quarantine reasons)."""
    log = tmp_path / "hostile.log"
    log.write_bytes(
        line(event(socket_row(pid=1), unix=T0))
        + bad
        + b"\n"
        + line(event(socket_row(pid=2), unix=T0 + 1))
    )
    report = Ingester(store, config).ingest([str(log)])
    reasons = [r[0] for r in store.conn.execute("SELECT reason FROM quarantine ORDER BY line")]
    pids = [r[0] for r in store.conn.execute("SELECT pid FROM observations ORDER BY pid")]
    assert {1, 2} <= set(pids), "good lines around the bad one are kept"
    return report.observations, report.rejected, reasons


@pytest.mark.parametrize(
    ("bad", "reason_part"),
    [
        (b'{"name": "pack/x/rarenet_open_sockets", "columns": {"pid": "1"', "not valid JSON"),
        (b"\xff\xfe\x00garbage\x80", "not valid JSON"),
        (b"42", "expected a JSON object"),
        (b'{"hostIdentifier": "h", "unixTime": 1767571260}', "no query `name`"),
        (orjson.dumps({**envelope(), "action": "added"}), "not an osquery result"),
        (orjson.dumps({**envelope(), "columns": "nope"}), "`columns` is not an object"),
        (
            orjson.dumps({**envelope(), "columns": socket_row(), "action": "exploded"}),
            "unknown action",
        ),
        (orjson.dumps(event(socket_row(pid="{}"))), "pid"),
        (orjson.dumps(event({**socket_row(), "pid": {"a": 1}})), "pid has type dict"),
        (orjson.dumps(event({**socket_row(), "name": ["bash"]})), "name has type list"),
        (orjson.dumps(event(socket_row(remote_port="99999"))), "remote_port 99999 is out of range"),
        (orjson.dumps(event(socket_row(remote_address="not-an-ip"))), "is not an IP address"),
        (json.dumps({**event(socket_row()), "unixTime": 10**30}).encode(), "unixTime"),
        (json.dumps(event(socket_row(pid=10**30))).encode(), "pid"),
        (orjson.dumps({**event(socket_row()), "unixTime": "soon"}), "unixTime"),
        (
            orjson.dumps(
                {
                    k: v
                    for k, v in event(socket_row()).items()
                    if k not in ("unixTime", "calendarTime")
                }
            ),
            "no unixTime",
        ),
        (
            orjson.dumps(
                {
                    k: v
                    for k, v in event(socket_row()).items()
                    if k not in ("hostIdentifier", "decorations")
                }
            ),
            "no hostIdentifier",
        ),
        (orjson.dumps([[[[event(socket_row())]]]]), "nested too deeply"),
    ],
)
def test_rejects_are_quarantined_with_reason(
    tmp_path: Path, empty_store: Store, config: Config, bad: bytes, reason_part: str
) -> None:
    observations, rejected, reasons = ingest_between_good_lines(tmp_path, empty_store, config, bad)
    assert (observations, rejected) == (2, 1)
    assert len(reasons) == 1 and reason_part in reasons[0], reasons


def test_non_utf8_inside_a_string_keeps_the_row(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    bad = (
        line(event(socket_row(pid=3, cmdline="CMDLINE"), unix=T0))
        .rstrip(b"\n")
        .replace(b"CMDLINE", b"perl \xff\xfe -e")
    )
    observations, rejected, _ = ingest_between_good_lines(tmp_path, empty_store, config, bad)
    assert (observations, rejected) == (3, 0)
    cmdline = empty_store.conn.execute("SELECT cmdline FROM observations WHERE pid = 3").fetchone()[
        0
    ]
    assert cmdline == "perl \ufffd\ufffd -e"


def test_ten_megabyte_line(tmp_path: Path, empty_store: Store, config: Config) -> None:
    huge_valid = orjson.dumps(event(socket_row(pid=3, cmdline="A" * 10_000_000)))
    observations, rejected, _ = ingest_between_good_lines(tmp_path, empty_store, config, huge_valid)
    assert (observations, rejected) == (3, 0)
    kept = empty_store.conn.execute(
        "SELECT length(cmdline) FROM observations WHERE pid = 3"
    ).fetchone()[0]
    assert kept == 8192  # long text fields are capped, the row is kept


def test_ten_megabyte_garbage_line(tmp_path: Path, empty_store: Store, config: Config) -> None:
    observations, rejected, reasons = ingest_between_good_lines(
        tmp_path, empty_store, config, b"{" * 10_000_000
    )
    assert (observations, rejected) == (2, 1) and "not valid JSON" in reasons[0]
    raw_size, kept = empty_store.conn.execute(
        "SELECT raw_size, length(raw) FROM quarantine"
    ).fetchone()
    assert raw_size == 10_000_000 and kept == 64 * 1024


def test_line_over_max_body_is_rejected_without_buffering(tmp_path: Path, config: Config) -> None:
    from dataclasses import replace

    small = replace(config, ingest=replace(config.ingest, max_body=1024))
    with Store(tmp_path / "small.db") as store:
        observations, rejected, reasons = ingest_between_good_lines(
            tmp_path, store, small, b"[" + b" " * 5_000_000 + b"]"
        )
    assert (observations, rejected) == (2, 1)
    assert "5000002 bytes, over the 1024-byte limit ([ingest] max_body)" in reasons[0]


def test_sql_looking_strings_in_every_text_field(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    text_fields = [
        "name",
        "path",
        "cmdline",
        "cwd",
        "username",
        "parent_name",
        "state",
        "local_address",
    ]
    row = socket_row(**{name: SQL for name in text_fields}, pid=3)
    bad = orjson.dumps(event(row, host=SQL, name=f"pack/{SQL}/rarenet_open_sockets"))
    observations, rejected, _ = ingest_between_good_lines(tmp_path, empty_store, config, bad)
    assert (observations, rejected) == (3, 0)
    stored = empty_store.conn.execute(
        f"SELECT host, {', '.join(text_fields)} FROM observations WHERE pid = 3"
    ).fetchone()
    assert set(stored) == {SQL}
    assert empty_store.conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 3


def test_empty_file(tmp_path: Path, empty_store: Store, config: Config) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    report = Ingester(empty_store, config).ingest([str(empty)])
    assert (report.lines, report.observations, report.rejected, report.errors) == (0, 0, 0, [])


def test_directory_and_missing_file_are_clear_errors_and_do_not_stop_others(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    good = tmp_path / "good.log"
    good.write_bytes(line(event(socket_row())))
    report = Ingester(empty_store, config).ingest(
        [str(tmp_path), str(tmp_path / "nope.log"), str(good)]
    )
    assert report.observations == 1
    assert report.errors == [
        f"{tmp_path}: is a directory (pass the files inside it, e.g. {tmp_path}/*.log)",
        f"{tmp_path / 'nope.log'}: no such file",
    ]


def test_blank_and_whitespace_lines_are_ignored(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    log = tmp_path / "blank.log"
    log.write_bytes(b"\n   \n\t\n" + line(event(socket_row())) + b"\n\n")
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.lines, report.observations, report.rejected) == (6, 1, 0)


def test_unhashable_direction_does_not_stop_ingest(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    bad = orjson.dumps(event({**socket_row(pid=3), "direction": {"x": 1}}))
    observations, rejected, _ = ingest_between_good_lines(tmp_path, empty_store, config, bad)
    assert (observations, rejected) == (3, 0)
    assert empty_store.conn.execute(
        "SELECT direction FROM observations WHERE pid = 3"
    ).fetchone() == ("outbound",)


def test_socket_event_time_far_from_its_result_is_rejected(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    row = {
        "action": "connect",
        "pid": "7",
        "path": "/tmp/x",
        "family": "2",
        "remote_address": "203.0.113.1",
        "remote_port": "80",
        "time": str(T0 + 30 * 86400),
    }
    bad = orjson.dumps(event(row, name="rarenet_socket_events"))
    observations, rejected, reasons = ingest_between_good_lines(tmp_path, empty_store, config, bad)
    assert (observations, rejected) == (
        2,
        1,
    ) and "more than a day from the result's unixTime" in reasons[0]
