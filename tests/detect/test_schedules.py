"""Schedules and the long memory: a job on a calendar (weekly, monthly, quarterly) is new
on its first run and routine from its second, beyond the 14-day baseline; an attacker
who comes back by hand a week later to the hour is still signalled
(baseline/detect/schedule.py, memory.py, recurring.py; docs/scoring.md "Schedules")."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.osquery_lines import T0, connection_line
from support.stores import ingest_lines, opened_copy, store_of_lines

from rarenet.baseline.cli.explain_cmd import describe
from rarenet.baseline.config import DetectSettings, load_config
from rarenet.baseline.detect.maintenance import prune_once
from rarenet.baseline.detect.memory import remembered
from rarenet.baseline.detect.presence import refresh_presence
from rarenet.baseline.detect.rule import RunResult, detect_once
from rarenet.baseline.detect.schedule import (
    MEMORY_DAYS,
    decode,
    encode,
    ordinal,
    recurrence,
)
from rarenet.baseline.detect.why import why
from rarenet.baseline.store import Store
from rarenet.baseline.units import format_time, parse_time

SPAN, HOUR, DAY = 900, 3600, 86400
START = (T0 // DAY) * DAY  # Mon 2026-01-05
WEB = [f"web-{i:02d}" for i in range(8)]
DB = [f"db-{i:02d}" for i in range(3)]
HOSTS = [*WEB, *DB, "dev-alice"]
# routine data only where a scored bucket's 14-day window needs it
ROUTINE_DAYS = [*range(0, 56), *range(111, 127)]
PGBACKREST = "/usr/bin/pgbackrest"  # weekly, on db-01
ARCHIVE = "/usr/local/sbin/archive-logs"  # monthly, 00:30 on the 1st at UTC+2, on web-02
LEGO = "/usr/bin/lego"  # quarterly, on web-04
NC = "/usr/bin/nc.openbsd"


def at(text: str) -> int:
    return parse_time(text)


def _row(host: str, t: int, name: str, path: str, remote: str, port: int, parent: str) -> bytes:
    return connection_line(host, t, name, path, remote, port, username="root", parent_name=parent)


def routine() -> list[bytes]:
    """Hourly: nginx on the web servers, postgres replication on the database servers,
    the editor on the workstation; curl every few hours everywhere."""
    rnd = random.Random(31)
    out = []
    for day in ROUTINE_DAYS:
        for hour in range(24):
            base = START + day * DAY + hour * HOUR
            for i, host in enumerate(HOSTS):
                t = base + rnd.randrange(HOUR - 5)
                if host in WEB:
                    out.append(
                        _row(host, t, "nginx", "/usr/sbin/nginx", "198.51.100.4", 443, "systemd")
                    )
                elif host in DB:
                    out.append(
                        _row(
                            host,
                            t,
                            "postgres",
                            "/usr/lib/postgresql/16/bin/postgres",
                            "10.0.0.9",
                            5432,
                            "systemd",
                        )
                    )
                else:
                    out.append(
                        _row(
                            host, t, "code", "/usr/share/code/code", "203.0.113.80", 443, "systemd"
                        )
                    )
                if hour % 4 == i % 4:
                    out.append(
                        _row(host, t + 1, "curl", "/usr/bin/curl", "203.0.113.81", 443, "bash")
                    )
    return out


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = store_of_lines(tmp_path_factory.mktemp("schedules"), routine())
    with Store(db) as store:
        refresh_presence(store, SPAN)
        with store.transaction() as conn:  # a service that has been running: all scored
            conn.execute("DELETE FROM pending_host_bucket")
    return db


@pytest.fixture
def mature_fleet_store(base_db: Path, tmp_path: Path) -> Iterator[Store]:
    """A copy of the module's routine fleet (`base_db`) to add uses to and run on."""
    yield from opened_copy(base_db, tmp_path)


def use(store: Store, host: str, path: str, t: int, parent: str = "cron", port: int = 443) -> None:
    """`path` on `host` connects out at data time `t`, started by `parent`."""
    name = path.rsplit("/", 1)[-1]
    log = Path(store.path).parent / f"use-{host}-{t}.log"
    ingest_lines(store, [_row(host, t, name, path, "203.0.113.200", port, parent)], log)


def run(store: Store, settings: DetectSettings, t: int) -> RunResult:
    """The run whose look-back first holds data time `t`."""
    return detect_once(store, settings, t - t % SPAN + 2 * SPAN)


def signals_for(result: RunResult, path: str) -> list[dict[str, Any]]:
    return [d for d in result.documents if d["process"]["executable"] == path]


def schedule_of(store: Store, settings: DetectSettings, host: str, path: str, t: int) -> Any:
    """What explain says of the use at `t`: its finding's schedule and reason."""
    answer = why(store, settings, host, path, t - t % SPAN + 2 * SPAN)
    (finding,) = [f for f in answer.findings if f.bucket == t - t % SPAN]
    return finding


# -- the calendar itself -------------------------------------------------------------


def test_recurrence_reads_weekly_monthly_quarterly_and_daily_from_the_second_time() -> None:
    weekly = recurrence(at("2026-01-28T02:04:00Z"), [at("2026-01-21T02:00:00Z")])
    assert weekly is not None and (weekly.every, weekly.occurrence) == ("weekly", 2)
    third = recurrence(
        at("2026-02-04T02:15:00Z"), [at("2026-01-21T02:00:00Z"), at("2026-01-28T02:04:00Z")]
    )
    assert third is not None and (third.every, third.occurrence) == ("weekly", 3)
    assert third.sentence().startswith("recurs weekly, 3rd time (before: 2026-01-28T02:04")
    # 00:30 on the 1st at UTC+2 is 22:30 UTC on the month's last day: 31st, then 28th
    monthly = recurrence(at("2026-02-28T22:30:00Z"), [at("2026-01-31T22:30:00Z")])
    assert monthly is not None and monthly.every == "monthly"
    quarterly = recurrence(at("2026-05-10T03:10:00Z"), [at("2026-02-10T03:00:00Z")])
    assert quarterly is not None and quarterly.every == "quarterly"
    daily = recurrence(at("2026-01-22T02:00:00Z"), [at("2026-01-21T02:30:00Z")])
    assert daily is not None and daily.every == "daily"


def test_no_recurrence_off_the_clock_off_the_calendar_or_on_a_first_run() -> None:
    assert recurrence(at("2026-01-21T02:00:00Z"), []) is None  # a first-ever run
    assert recurrence(at("2026-01-28T06:30:00Z"), [at("2026-01-21T02:00:00Z")]) is None
    assert recurrence(at("2026-01-26T02:00:00Z"), [at("2026-01-21T02:00:00Z")]) is None
    # the same day earlier does not count, nor days older than the memory kept
    assert recurrence(at("2026-01-21T05:00:00Z"), [at("2026-01-21T04:00:00Z")]) is None
    old = at("2026-01-21T02:00:00Z")
    assert recurrence(at("2026-01-28T02:00:00Z"), [old], since=old + 1) is None


def test_the_memory_keeps_the_latest_days_first_use_each() -> None:
    times = [START + day * DAY + 3600 + minute * 60 for day in range(50) for minute in (30, 5)]
    kept = decode(encode(times))
    assert len(kept) == MEMORY_DAYS
    assert kept == [START + day * DAY + 3600 + 5 * 60 for day in range(50 - MEMORY_DAYS, 50)]
    assert decode("zz") == [] and decode(None) == []
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
    ]


# -- the long memory in the store ----------------------------------------------------


def test_the_fold_remembers_days_in_any_arrival_order_and_prune_forgets(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    first, second, third = (at(f"2026-01-{day}T02:00:00Z") for day in (14, 21, 28))
    use(mature_fleet_store, "db-01", PGBACKREST, third)
    use(mature_fleet_store, "db-01", PGBACKREST, first)  # late: older than the day remembered
    use(mature_fleet_store, "db-01", PGBACKREST, second + 20 * 60)
    use(
        mature_fleet_store, "db-01", PGBACKREST, second
    )  # the same day, earlier: the first use counts
    use(mature_fleet_store, "db-01", PGBACKREST, second)  # the same line twice: nothing new
    run(mature_fleet_store, settings, third)  # folds
    (days,) = remembered(mature_fleet_store.conn, SPAN, [["db-01", "pgbackrest", PGBACKREST]])
    assert decode(days) == [first, second, third]
    config = load_config(None, env={})
    prune_once(mature_fleet_store, config, now=third + int(settings.memory) - DAY)
    assert remembered(mature_fleet_store.conn, SPAN, [["db-01", "pgbackrest", PGBACKREST]]) == [
        days
    ]
    prune_once(mature_fleet_store, config, now=third + int(settings.memory) + DAY)
    assert remembered(mature_fleet_store.conn, SPAN, [["db-01", "pgbackrest", PGBACKREST]]) == [
        None
    ]


# -- the rule --------------------------------------------------------------------------


def test_a_weekly_job_is_signalled_on_its_first_run_only(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    runs = [at("2026-01-21T02:00:00Z"), at("2026-01-28T02:04:00Z"), at("2026-02-04T01:58:00Z")]
    found = []
    for t in runs:
        use(mature_fleet_store, "db-01", PGBACKREST, t)
        found.append(signals_for(run(mature_fleet_store, settings, t), PGBACKREST))
    assert [len(f) for f in found] == [1, 0, 0]
    assert found[0][0]["score"] >= 50
    # every signal says what the long memory knows: here, the first use on this host
    assert found[0][0]["explanation"]["history"] == {
        "days_on_host_before": 0,
        "days_at_least": False,
        "first_used_on_host": None,
    }
    later = schedule_of(mature_fleet_store, settings, "db-01", PGBACKREST, runs[2])
    assert later.outcome.value == "below threshold"
    assert later.explanation["schedule"]["every"] == "weekly"
    assert later.explanation["schedule"]["occurrence"] == 3
    assert "recurs weekly, 3rd time" in later.reason
    assert later.explanation["history"]["days_on_host_before"] == 2
    assert later.explanation["history"]["first_used_on_host"] == format_time(
        runs[0] - runs[0] % SPAN
    )
    assert later.score < 25 <= later.explanation["score_without_rollout"]
    text = "\n".join(
        describe(why(mature_fleet_store, settings, "db-01", PGBACKREST, runs[2] + 2 * SPAN))
    )
    assert "schedule: recurs weekly, occurrence 3" in text and "score × 0.25" in text


def test_monthly_in_the_hosts_time_zone_and_quarterly_beyond_the_baseline(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    monthly = [at("2026-01-31T22:30:00Z"), at("2026-02-28T22:31:00Z")]
    quarterly = [at("2026-02-10T03:00:00Z"), at("2026-05-10T03:10:00Z")]
    got: dict[str, list[int]] = {ARCHIVE: [], LEGO: []}
    for t, host, path in sorted(
        [(t, "web-02", ARCHIVE) for t in monthly] + [(t, "web-04", LEGO) for t in quarterly]
    ):
        use(mature_fleet_store, host, path, t)
        got[path].append(len(signals_for(run(mature_fleet_store, settings, t), path)))
    assert got == {ARCHIVE: [1, 0], LEGO: [1, 0]}
    finding = schedule_of(mature_fleet_store, settings, "web-04", LEGO, quarterly[1])
    assert finding.explanation["schedule"]["every"] == "quarterly"
    assert "recurs quarterly, 2nd time" in finding.reason


@pytest.mark.parametrize(("parent", "signals"), [("sh", [1, 1]), ("cron", [1, 0])])
def test_an_attacker_back_by_hand_a_week_later_to_the_hour_is_signalled_again(
    mature_fleet_store: Store, settings: DetectSettings, parent: str, signals: list[int]
) -> None:
    """nc signalled on a web server, back a week later within the hour: started by hand
    (from a shell) it is a return, signalled in the first visit's group; a binary with an
    open signal is credited with a schedule only when a scheduler (here cron) starts it."""
    visits = [at("2026-01-20T10:00:00Z"), at("2026-01-27T10:30:00Z")]
    found = []
    for t in visits:
        use(mature_fleet_store, "web-05", NC, t, parent=parent, port=4444)
        found.append(signals_for(run(mature_fleet_store, settings, t), NC))
    assert [len(s) for s in found] == signals
    assert found[0][0]["explanation"]["user"] == {
        "name": "root",
        "ran_it_before": False,
        "usual": [],
    }
    if parent == "sh":
        assert found[1][0]["explanation"]["returning"]["signal"] == found[0][0]["id"]
        assert found[1][0]["explanation"]["schedule"] is None
        # the guide's "is this user expected?": root ran nc here a week before
        assert found[1][0]["explanation"]["user"] == {
            "name": "root",
            "ran_it_before": True,
            "usual": ["root"],
        }


def test_a_dropper_or_a_shell_is_never_on_a_schedule(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    for path in ("/tmp/.x/beacon", "/usr/bin/bash"):
        host = "web-07" if path.startswith("/tmp") else "db-02"
        counts = []
        for t in (at("2026-01-20T10:00:00Z"), at("2026-01-27T10:05:00Z")):
            use(mature_fleet_store, host, path, t, parent="cron", port=4444)
            counts.append(len(signals_for(run(mature_fleet_store, settings, t), path)))
        assert counts == [1, 1], path


def _attack(store: Store, host: str, t: int, path: str, port: int, **columns: Any) -> None:
    """One attack connection: `path` on `host` at `t` to a never-used address."""
    name = columns.pop("name", path.rsplit("/", 1)[-1])
    log = Path(store.path).parent / f"attack-{host}-{t}.log"
    ingest_lines(
        store, [connection_line(host, t, name, path, "198.51.100.66", port, **columns)], log
    )


def test_every_attack_family_is_signalled_on_a_small_fleet_after_four_months(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    """The small long-running fleet (12 hosts, January to May): in its 18th week one of
    each attack family, each a signal — never-seen, masquerade, host novelty, an implant
    spreading to three hosts, a classic tool repeated on another host, a child of a shell
    holding the socket, and a return after a quiet day."""
    day = START + 124 * DAY  # 2026-05-09, two weeks into the routine data's last stretch
    shell = {"parent_name": "bash", "username": "www-data", "uid": "33"}
    attacks: list[tuple[str, str, int, int, dict[str, Any]]] = [
        ("never-seen", "web-03", day + 10 * HOUR, 4444, {"path": NC, **shell}),
        ("masquerade", "db-02", day + 11 * HOUR, 8443,
         {"path": "/dev/shm/nginx", "name": "nginx", **shell}),
        ("host-novelty", "web-07", day + 12 * HOUR, 5432,
         {"path": "/usr/lib/postgresql/16/bin/postgres", **shell}),
        ("spread", "web-01", day + 13 * HOUR, 8080, {"path": "/var/tmp/.cache/agent", **shell}),
        ("spread", "db-00", day + 15 * HOUR, 8080, {"path": "/var/tmp/.cache/agent", **shell}),
        ("spread", "dev-alice", day + 17 * HOUR, 8080,
         {"path": "/var/tmp/.cache/agent", **shell}),
        ("child-shell", "web-06", day + 18 * HOUR, 4444,
         {"path": "/usr/bin/sleep", "parent_name": "bash", "username": "www-data"}),
        ("repeat", "db-01", day + DAY + 10 * HOUR, 4444, {"path": NC, **shell}),
        ("returning", "web-03", day + 2 * DAY + 10 * HOUR, 4444, {"path": NC, **shell}),
    ]  # fmt: skip
    missed = []
    for family, host, t, port, columns in attacks:
        path = columns.pop("path")
        _attack(mature_fleet_store, host, t, path, port, **columns)
        found = [
            s
            for s in signals_for(run(mature_fleet_store, settings, t), path)
            if s["host"]["name"] == host
        ]
        if not found:
            missed.append((family, host, path))
    assert missed == []
