"""`Ingester` on real files: idempotency, checkpoints, rotation, partial lines, gzip."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from support.osquery_lines import T0, batch, event, line, snapshot, socket_row

from rarenet.baseline.config import Config
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.store import Store


def write(path: Path, *objs: object, mode: str = "wb") -> None:
    with path.open(mode) as handle:
        for obj in objs:
            handle.write(line(obj))


def events(count: int, start: int = 0, host: str = "web-001") -> list[dict[str, object]]:
    return [
        event(socket_row(pid=1000 + i), unix=T0 + i, host=host) for i in range(start, start + count)
    ]


def stored(store: Store) -> list[tuple[object, ...]]:
    return store.conn.execute(
        "SELECT time, host, pid, name, remote_address FROM observations ORDER BY time, pid"
    ).fetchall()


def test_file_ingest_then_again_stores_nothing_new(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    log = tmp_path / "osqueryd.results.log"
    write(log, *events(50))
    first = Ingester(empty_store, config).ingest([str(log)])
    assert (first.lines, first.observations, first.duplicates, first.rejected) == (50, 50, 0, 0)
    again = Ingester(empty_store, config).ingest([str(log)])
    assert (again.lines, again.observations) == (0, 0)  # resumed from the checkpoint
    assert len(stored(empty_store)) == 50


def test_same_lines_in_another_file_are_duplicates(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    write(a, *events(20))
    write(b, *events(20))
    Ingester(empty_store, config).ingest([str(a)])
    report = Ingester(empty_store, config).ingest([str(b)])
    assert (report.observations, report.duplicates) == (0, 20)
    assert len(stored(empty_store)) == 20


def test_grown_file_is_read_from_its_checkpoint(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    log = tmp_path / "results.log"
    write(log, *events(10))
    Ingester(empty_store, config).ingest([str(log)])
    write(log, *events(5, start=10), mode="ab")
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.lines, report.observations, report.duplicates) == (5, 5, 0)
    assert len(stored(empty_store)) == 15


def test_partial_last_line_waits_for_its_newline(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    log = tmp_path / "results.log"
    full = line(events(1, start=1)[0])
    log.write_bytes(line(events(1)[0]) + full[:40])
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.observations, report.rejected, report.pending_bytes) == (1, 0, 40)
    with log.open("ab") as handle:
        handle.write(full[40:])
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.observations, report.rejected, report.pending_bytes) == (1, 0, 0)
    assert empty_store.conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


def test_complete_last_line_without_newline_is_taken(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    log = tmp_path / "results.log"
    log.write_bytes(line(events(1)[0]).rstrip(b"\n"))
    assert Ingester(empty_store, config).ingest([str(log)]).observations == 1
    with log.open("ab") as handle:  # the writer finishes the line later: nothing doubles
        handle.write(b"\n" + line(events(1, start=1)[0]))
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.observations, report.duplicates, report.rejected) == (1, 0, 0)


def test_rotation_by_rename_is_followed(tmp_path: Path, empty_store: Store, config: Config) -> None:
    log = tmp_path / "osqueryd.results.log"
    write(log, *events(10))
    Ingester(empty_store, config).ingest([str(log)])
    write(log, *events(3, start=10), mode="ab")  # written after our last read…
    os.rename(log, tmp_path / "osqueryd.results.log.1")  # …then rotated away
    write(log, *events(4, start=13))
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.observations, report.duplicates) == (7, 0)
    assert [row[2] for row in stored(empty_store)] == list(range(1000, 1017))


def test_truncated_in_place_starts_over(tmp_path: Path, empty_store: Store, config: Config) -> None:
    log = tmp_path / "results.log"
    write(log, *events(10))
    Ingester(empty_store, config).ingest([str(log)])
    write(log, *events(2, start=50), mode="wb")  # copytruncate-style rotation
    report = Ingester(empty_store, config).ingest([str(log)])
    assert report.observations == 2


def test_gzip_file(tmp_path: Path, empty_store: Store, config: Config) -> None:
    log = tmp_path / "results.log.gz"
    with gzip.open(log, "wb") as handle:
        for obj in events(30):
            handle.write(line(obj))
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.lines, report.observations) == (30, 30)
    assert Ingester(empty_store, config).ingest([str(log)]).observations == 0


def test_mixed_formats_in_one_file(tmp_path: Path, empty_store: Store, config: Config) -> None:
    log = tmp_path / "mixed.log"
    write(
        log,
        event(socket_row(pid=1)),
        snapshot([socket_row(pid=2), socket_row(pid=3)], unix=T0 + 1),
        batch([socket_row(pid=4)], unix=T0 + 2),
        event(socket_row(pid=5), action="removed"),
        event({"name": "x", "version": "1"}, name="pack/Global/other"),
    )
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.lines, report.observations, report.skipped) == (5, 4, 2)


def test_bad_lines_are_quarantined_with_file_and_line(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    log = tmp_path / "results.log"
    good = events(3)
    log.write_bytes(
        line(good[0]) + b'{"name": "truncated\n' + line(good[1]) + b"[1, 2]\n" + line(good[2])
    )
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.lines, report.observations, report.rejected) == (5, 3, 2)
    rows = empty_store.conn.execute(
        "SELECT source, line, reason FROM quarantine ORDER BY line"
    ).fetchall()
    assert [(Path(r[0]).name, r[1]) for r in rows] == [("results.log", 2), ("results.log", 4)]
    assert "not valid JSON" in rows[0][2]
    assert "expected a JSON object" in rows[1][2]


@pytest.mark.parametrize("compressed", [False, True])
def test_parallel_workers_store_the_same_rows(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    """Plain files go to workers as byte ranges they read themselves, gzip as lines;
    both must store exactly what a single process stores, and checkpoint the same."""
    import rarenet.baseline.ingest.pipeline as pipeline
    import rarenet.baseline.ingest.reader as reader

    plain = tmp_path / "big.log"
    write(plain, *events(3000), *[event(socket_row(pid=1), unix=T0)] * 10)
    with plain.open("ab") as handle:
        handle.write(b"not json\n")
    write(plain, *events(500, start=3000), mode="ab")
    tail = line(events(1, start=9000)[0])
    with plain.open("ab") as handle:
        handle.write(tail[:30])  # an unfinished last line waits in both modes
    log = plain
    if compressed:
        log = tmp_path / "big.log.gz"
        log.write_bytes(gzip.compress(plain.read_bytes()[:-30]))
    serial_store = Store(tmp_path / "serial.db")
    parallel_store = Store(tmp_path / "parallel.db")
    monkeypatch.setattr(reader, "CHUNK_LINES", 97)
    serial = Ingester(serial_store, config).ingest([str(log)])
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "RANGE_BYTES", 50_000)
    parallel = Ingester(parallel_store, config, workers=2).ingest([str(log)])
    assert parallel.rejected == 1 and parallel.observations == 3501
    assert serial.as_json() | {"seconds": 0} == parallel.as_json() | {"seconds": 0}
    assert stored(serial_store) == stored(parallel_store)
    quarantined = "SELECT line, reason FROM quarantine"
    assert (
        serial_store.conn.execute(quarantined).fetchall()
        == parallel_store.conn.execute(quarantined).fetchall()
        == [(3011, serial_store.conn.execute(quarantined).fetchone()[1])]
    )
    end = log.stat().st_size - (0 if compressed else 30)
    if compressed:
        end = len(gzip.decompress(log.read_bytes()))
    for store in (serial_store, parallel_store):
        checkpoint = store.checkpoints_for_path(str(log.resolve()))[0]
        assert (checkpoint.offset, checkpoint.line) == (end, 3511)
    if not compressed:
        assert parallel.pending_bytes == serial.pending_bytes == 30


def test_every_format_end_to_end_field_by_field(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    """One file holding each shape osquery and Fleet write; every stored column checked."""
    from support.osquery_lines import fleet_body

    socket_event = {
        "action": "connect",
        "pid": "77",
        "fd": "3",
        "family": "10",
        "protocol": "6",
        "local_address": "2001:db8::5",
        "local_port": "40000",
        "remote_address": "2001:db8::99",
        "remote_port": "8443",
        "path": "/tmp/.x/beacon",
        "auid": "1000",
        "time": str(T0 + 40),
        "status": "succeeded",
        "success": "1",
        "direction": "outbound",
    }
    log = tmp_path / "all-formats.log"
    write(
        log,
        event(socket_row(pid=1), host="evt"),
        snapshot(
            [socket_row(pid=2, name="curl", path="/usr/bin/curl", remote_port=443)],
            host="snap",
            unix=T0 + 10,
        ),
        batch(
            [socket_row(pid=3, uid=0, username="root")],
            [socket_row(pid=99)],
            host="batch",
            unix=T0 + 20,
        ),
        fleet_body(
            [
                event(
                    socket_row(
                        pid=4,
                        direction="inbound",
                        local_port=22,
                        name="sshd",
                        path="/usr/sbin/sshd",
                    ),
                    host="fleet",
                    unix=T0 + 30,
                    name="pack/Global/rarenet_open_sockets",
                )
            ]
        ),
        event(socket_event, host="audit", unix=T0 + 60, name="pack/team-3/rarenet_socket_events"),
    )
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.lines, report.observations, report.rejected, report.skipped) == (5, 5, 0, 1)
    columns = [
        "time", "host", "host_uuid", "name", "path", "pid", "uid", "username", "cmdline", "cwd",
        "parent_pid", "parent_name", "family", "protocol", "local_address", "local_port",
        "remote_address", "remote_port", "state", "direction", "query",
    ]  # fmt: skip
    rows = [
        dict(zip(columns, row, strict=True))
        for row in empty_store.conn.execute(
            f"SELECT {', '.join(columns)} FROM observations ORDER BY time"
        )
    ]
    base = {
        "uid": 33, "username": "www-data", "cmdline": "bash -i", "cwd": "/var/www", "parent_pid": 4000,
        "parent_name": "php-fpm8.2", "family": 2, "protocol": 6, "local_address": "10.0.0.5",
        "local_port": 51234, "remote_address": "203.0.113.7", "remote_port": 4444,
        "state": "ESTABLISHED", "direction": "outbound", "query": "rarenet_open_sockets",
        "name": "bash", "path": "/usr/bin/bash",
    }  # fmt: skip
    assert rows == [
        base | {"time": T0, "host": "evt", "host_uuid": "uuid-evt", "pid": 1},
        base | {"time": T0 + 10, "host": "snap", "host_uuid": "uuid-snap", "pid": 2, "name": "curl", "path": "/usr/bin/curl", "remote_port": 443},
        base | {"time": T0 + 20, "host": "batch", "host_uuid": "uuid-batch", "pid": 3, "uid": 0, "username": "root"},
        base | {"time": T0 + 30, "host": "fleet", "host_uuid": "uuid-fleet", "pid": 4, "name": "sshd", "path": "/usr/sbin/sshd", "local_port": 22, "direction": "inbound"},
        {
            "time": T0 + 40, "host": "audit", "host_uuid": "uuid-audit", "name": "beacon", "path": "/tmp/.x/beacon",
            "pid": 77, "uid": -1, "username": "", "cmdline": "", "cwd": "", "parent_pid": -1, "parent_name": "",
            "family": 10, "protocol": 6, "local_address": "2001:db8::5", "local_port": 40000,
            "remote_address": "2001:db8::99", "remote_port": 8443, "state": "", "direction": "outbound",
            "query": "rarenet_socket_events",
        },
    ]  # fmt: skip


def test_file_rotated_during_a_parallel_ingest_is_read_whole(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers read the file through the parent's open descriptor: renaming it away and
    putting a new file in its place mid-ingest loses nothing and checkpoints the right one."""
    import rarenet.baseline.ingest.pipeline as pipeline

    log = tmp_path / "results.log"
    write(log, *events(3000))
    original_inode = log.stat().st_ino
    real_plan = pipeline.plan_ranges

    def plan_then_rotate(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for index, piece in enumerate(real_plan(*args, **kwargs)):  # type: ignore[arg-type]
            if index == 1:
                os.rename(log, tmp_path / "results.log.1")
                write(log, *events(5, start=9000))
            yield piece

    monkeypatch.setattr(pipeline, "plan_ranges", plan_then_rotate)
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "RANGE_BYTES", 100_000)
    with Store(tmp_path / "r.db") as store:
        report = Ingester(store, config, workers=2).ingest([str(log)])
        assert (report.observations, report.errors) == (3000, [])
        assert store.checkpoint(log.stat().st_dev, original_inode) is not None
        follow_up = Ingester(store, config).ingest([str(log)])  # the new file is read next time
        assert follow_up.observations == 5


def test_truncated_and_regrown_past_the_checkpoint_is_read_again(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    log = tmp_path / "results.log"
    write(log, *events(10))
    Ingester(empty_store, config).ingest([str(log)])
    with log.open("r+b") as handle:  # same first line, different content after it
        handle.truncate(0)
    write(log, events(1)[0], *events(15, start=100), mode="ab")
    report = Ingester(empty_store, config).ingest([str(log)])
    assert (report.lines, report.observations, report.rejected) == (16, 15, 0)


def test_gzip_resumes_from_its_checkpoint(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    log = tmp_path / "old.log.gz"
    log.write_bytes(gzip.compress(b"".join(line(obj) for obj in events(40))))
    assert Ingester(empty_store, config).ingest([str(log)]).observations == 40
    again = Ingester(empty_store, config).ingest([str(log)])
    assert (again.lines, again.duplicates) == (0, 0)


def test_corrupt_gzip_keeps_lines_before_the_damage_and_names_the_file(
    tmp_path: Path, empty_store: Store, config: Config
) -> None:
    payload = gzip.compress(b"".join(line(obj) for obj in events(3000)))
    log = tmp_path / "cut.log.gz"
    log.write_bytes(payload[: len(payload) * 9 // 10])
    report = Ingester(empty_store, config).ingest([str(log)])
    assert len(report.errors) == 1 and report.errors[0].startswith(f"{log}: read failed after line")
    assert report.observations > 2000  # everything before the damage is stored


def test_a_fifo_is_refused_with_a_hint(tmp_path: Path, empty_store: Store, config: Config) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    report = Ingester(empty_store, config).ingest([str(fifo)])
    assert report.errors == [
        f"{fifo}: is not a regular file (a pipe or device) (stream it instead: cat {fifo} | rarenet ingest -)"
    ]
