"""An attack never becomes habit: a binary that raised a signal stays a suspect on its
host (baseline/detect/suspects.py) — a return after a quiet day is signalled again in the
first visit's group, use that goes on is counted on the open signal, and closing the
signal as benign (or an exception) makes the binary routine there again."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.osquery_lines import T0, connection_line
from support.stores import ingest_lines, opened_copy, store_of_lines

from rarenet.baseline.cli.explain_cmd import describe
from rarenet.baseline.config import DetectSettings
from rarenet.baseline.console import views
from rarenet.baseline.detect.exceptions import Exception_, add_exception
from rarenet.baseline.detect.peers import (
    APP_OCCASIONS,
    merge_answers,
    path_weights,
    routine_peer,
    similarity,
    spread_occasions,
)
from rarenet.baseline.detect.rule import RunResult, detect_once
from rarenet.baseline.detect.suspects import count_occasions
from rarenet.baseline.detect.why import why
from rarenet.baseline.store import Store

SPAN, HOUR, DAY = 900, 3600, 86400
START = (T0 // DAY) * DAY
DAYS = 8
WEB = [f"web-{i:02d}" for i in range(8)]
DB = [f"db-{i:02d}" for i in range(3)]
DEV = ["dev-alice"]
HOSTS = WEB + DB + DEV
FIRST = START + 4 * DAY + 10 * HOUR  # the first visit
NC = "/usr/bin/nc.openbsd"
RUNNERS = DB[:2]  # the only hosts that run java: too few for its name to be routine
JAVA17 = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
JAVA21 = "/usr/lib/jvm/java-21-openjdk-amd64/bin/java"


def _row(host: str, t: int, name: str, path: str, remote: str, port: int) -> bytes:
    return connection_line(host, t, name, path, remote, port, username="www-data")


def routine() -> list[bytes]:
    """8 days of a small fleet: nginx on web servers and bash health checks on database
    servers every bucket, code on the workstation in office hours, curl hourly."""
    rnd = random.Random(28)
    out = []
    for bucket in range(START, START + DAYS * DAY, SPAN):
        for i, host in enumerate(HOSTS):
            t = bucket + rnd.randrange(SPAN - 5)
            if host in WEB:
                out.append(_row(host, t, "nginx", "/usr/sbin/nginx", "198.51.100.4", 443))
            elif host in DB:
                out.append(_row(host, t, "bash", "/usr/bin/bash", "10.0.0.9", 5432))
                if host in RUNNERS and (bucket // SPAN) % 8 == 0:  # builds, every 2 hours
                    out.append(_row(host, t + 2, "java", JAVA17, "203.0.113.82", 443))
            elif 9 <= (bucket % DAY) // HOUR < 17:
                out.append(_row(host, t, "code", "/usr/share/code/code", "203.0.113.80", 443))
            if (bucket // SPAN) % 4 == i % 4:
                out.append(_row(host, t + 1, "curl", "/usr/bin/curl", "203.0.113.81", 443))
    return out


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return store_of_lines(tmp_path_factory.mktemp("returning"), routine())


@pytest.fixture
def mature_fleet_store(base_db: Path, tmp_path: Path) -> Iterator[Store]:
    """A copy of the module's routine fleet (`base_db`) to add uses to and run on."""
    yield from opened_copy(base_db, tmp_path)


def use(store: Store, host: str, path: str, at: int, remote: str = "198.51.100.23") -> None:
    """The binary at `path` on `host` connects out at data time `at`."""
    name = path.rsplit("/", 1)[-1]
    log = Path(store.path).parent / f"use-{host}-{at}.log"
    ingest_lines(store, [_row(host, at, name, path, remote, 4444)], log)


def run(store: Store, settings: DetectSettings, at: int) -> RunResult:
    """The run whose look-back first holds data time `at`."""
    return detect_once(store, settings, at - at % SPAN + 2 * SPAN)


def docs_for(result: RunResult, path: str) -> list[dict[str, Any]]:
    return [d for d in result.documents if d["process"]["executable"] == path]


def test_a_return_after_a_quiet_day_is_signalled_again_in_the_first_visits_group(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    use(mature_fleet_store, "web-03", NC, FIRST)
    (first,) = docs_for(run(mature_fleet_store, settings, FIRST), NC)
    back = FIRST + DAY + 4 * HOUR  # past suppress_for, after a quiet day
    use(mature_fleet_store, "web-03", NC, back)
    (again,) = docs_for(run(mature_fleet_store, settings, back), NC)
    assert again["id"] != first["id"] and again["score"] >= 80, again["reason"]
    assert again["group"] == first["group"] == first["id"]
    returning = again["explanation"]["returning"]
    assert returning["signal"] == first["id"] and returning["open_signals"] == 1
    assert again["reason"].startswith(
        f"returning: this binary raised signal {first['id'][:12]} on this host 28.0h ago "
        "(still open)"
    ), again["reason"]
    # the rarity the first visit would have taken away is kept: never seen in the fleet
    assert again["explanation"]["path"]["host_buckets"] == 0
    assert again["explanation"]["host"]["buckets_with_binary"] == 0
    answer = why(mature_fleet_store, settings, "web-03", NC, back - back % SPAN + 2 * SPAN)
    (finding,) = [f for f in answer.findings if f.signal == again["id"]]
    assert finding.group == first["id"] and "returning: this binary" in finding.reason
    # explain answers "internal or external?" for each stored signal's first connection
    assert "    first connection to 198.51.100.23:4444 (external) as www-data" in describe(answer)


def test_use_that_goes_on_is_counted_on_the_open_signal_not_signalled_daily(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    hourly = range(FIRST, FIRST + 2 * DAY, HOUR)
    for at in hourly:
        use(mature_fleet_store, "web-03", NC, at)
    runs = [run(mature_fleet_store, settings, at) for at in range(FIRST, FIRST + 2 * DAY, SPAN)]
    signals = [d for result in runs for d in docs_for(result, NC)]
    assert len(signals) == 1, [d["bucket"]["start"] for d in signals]
    count = mature_fleet_store.conn.execute(
        "SELECT suppressed_count FROM signals WHERE id = ?", (signals[0]["id"],)
    ).fetchone()[0]
    assert count >= len(hourly) - 1
    answer = why(mature_fleet_store, settings, "web-03", NC, FIRST + DAY + 2 * HOUR + 2 * SPAN)
    assert any("still in use since it" in f.sentence for f in answer.findings), [
        f.sentence for f in answer.findings
    ]


@pytest.mark.parametrize("verdict", ["benign", "attack", None])
def test_closing_as_benign_makes_the_binary_routine_again(
    mature_fleet_store: Store, settings: DetectSettings, verdict: str | None
) -> None:
    use(mature_fleet_store, "web-03", NC, FIRST)
    (first,) = docs_for(run(mature_fleet_store, settings, FIRST), NC)
    assert views.acknowledge(mature_fleet_store, first["id"], 1.0, verdict=verdict)
    back = FIRST + DAY + 4 * HOUR
    use(mature_fleet_store, "web-03", NC, back)
    again = docs_for(run(mature_fleet_store, settings, back), NC)
    if verdict == "benign":
        assert again == []
        (finding,) = why(
            mature_fleet_store, settings, "web-03", NC, back - back % SPAN + 2 * SPAN
        ).findings
        assert finding.score < settings.threshold and "returning" not in finding.explanation
    else:  # an attack, or acknowledged without a verdict: still a suspect
        assert [d["explanation"]["returning"]["signal"] for d in again] == [first["id"]]


def test_an_exception_covering_the_signal_makes_the_binary_routine_again(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    """The exception covers the first visit's destination only; the return goes elsewhere,
    so it is not excepted itself: it is quiet because the binary is routine again."""
    use(mature_fleet_store, "web-03", NC, FIRST)
    assert len(docs_for(run(mature_fleet_store, settings, FIRST), NC)) == 1
    entry = Exception_(0, path_glob=NC, host="web-03", cidr="198.51.100.23/32", reason="lab")
    add_exception(mature_fleet_store, entry, now=FIRST + HOUR)
    back = FIRST + DAY + 4 * HOUR
    use(mature_fleet_store, "web-03", NC, back, remote="192.0.2.77")
    result = run(mature_fleet_store, settings, back)
    assert docs_for(result, NC) == [] and result.excepted == 0
    (finding,) = why(
        mature_fleet_store, settings, "web-03", NC, back - back % SPAN + 2 * SPAN
    ).findings
    assert finding.score < settings.threshold, finding.reason


@pytest.mark.parametrize(
    ("path", "occasions", "signalled"),
    [
        ("/home/alice/bin/tool", 1, False),  # a person's own tool: theirs once used again
        ("/usr/local/bin/tool", 1, True),  # installed for the host: a second occasion
        ("/usr/local/bin/tool", 2, False),
        (NC, 2, True),  # a system binary needs a third occasion
        (NC, 3, False),
        ("/tmp/.x/beacon", 4, True),  # a dropper's place: never without a person
    ],
)
def test_a_suspect_settles_by_occasions_by_location_never_in_tmp(
    mature_fleet_store: Store, settings: DetectSettings, path: str, occasions: int, signalled: bool
) -> None:
    host = "dev-alice"
    times = [FIRST + k * 13 * HOUR for k in range(occasions)]  # 13 h apart: occasions
    for at in times:
        use(mature_fleet_store, host, path, at)
    for at in range(FIRST, times[-1] + HOUR, SPAN):
        run(mature_fleet_store, settings, at)
    back = times[-1] + DAY + 4 * HOUR  # after a quiet day
    use(mature_fleet_store, host, path, back)
    again = docs_for(run(mature_fleet_store, settings, back), path)
    assert bool(again) is signalled, [d["reason"] for d in again]


@pytest.mark.parametrize(("host", "signalled"), [("db-02", False), ("web-03", True)])
def test_a_package_path_settles_when_a_peer_uses_it_routinely(
    mature_fleet_store: Store, settings: DetectSettings, host: str, signalled: bool
) -> None:
    """The JDK the two build hosts use all day, new on the third database host (their
    peer: the same bash and curl), is that peer group's routine: weak evidence, no
    signal on its first use nor back after a quiet day. On a web server (whose peers
    never run java) it is signalled, and the same return is signalled again."""
    use(mature_fleet_store, host, JAVA17, FIRST)
    first = docs_for(run(mature_fleet_store, settings, FIRST), JAVA17)
    assert bool(first) is signalled, [d["reason"] for d in first]
    assert all(d["host"]["name"] == host for d in first)
    back = FIRST + DAY + 4 * HOUR
    use(mature_fleet_store, host, JAVA17, back)
    again = docs_for(run(mature_fleet_store, settings, back), JAVA17)
    assert bool(again) is signalled, [d["reason"] for d in again]
    answer = why(mature_fleet_store, settings, host, JAVA17, back - back % SPAN + 2 * SPAN)
    (finding,) = [f for f in answer.findings if f.bucket == back - back % SPAN]
    assert (finding.score >= settings.threshold) is signalled, finding.reason
    # explain names the host's peers and how they use the binary
    if signalled:  # a web server's paths are all common here: it has no peers
        assert answer.peers == [] and "  peers of web-03: none (no host uses" in "\n".join(
            describe(answer)
        )
    else:
        assert "its peer db-00 (1 alike) uses it routinely" in finding.reason
        assert finding.explanation["peer_routine"]["discount"] == 0.5
        assert [(p.host, p.similarity) for p in answer.peers] == [("db-00", 1.0), ("db-01", 1.0)]
        assert all(p.occasions >= 3 for p in answer.peers)
        assert any(
            line.startswith("  peers of db-02: db-00 (1, used it over ")
            for line in describe(answer)
        )
        assert answer.as_json()["peers"][0]["host"] == "db-00"


def test_peers_are_hosts_with_mostly_the_same_paths_where_paths_tell_hosts_apart() -> None:
    bash, curl, nginx = "/usr/bin/bash", "/usr/bin/curl", "/usr/sbin/nginx"
    weights = path_weights({bash: 3, curl: 12, nginx: 8, JAVA17: 2}, 12)
    assert weights[curl] == weights[nginx] == 0.0  # on a quarter of the hosts or more
    assert weights[JAVA17] > weights[bash] > 0
    answer = [
        [["db-02", [bash, curl]], ["db-00", [bash, curl, JAVA17]], ["web-00", [nginx, curl]]],
        [[["db-00", 3], ["web-00", 9]], [["db-00", 2]]],
        2,
    ]
    peer = routine_peer(answer, "db-02", JAVA17, 0, {"db-02"}, weights)
    assert peer is not None and (peer.host, peer.similarity) == ("db-00", 1.0)
    assert routine_peer(answer, "db-02", JAVA17, 1, {"db-02"}, weights) is None  # 2 half-days
    # an app a person runs: a peer that ran it at all speaks for it
    app_peer = routine_peer(answer, "db-02", JAVA17, 1, {"db-02"}, weights, APP_OCCASIONS)
    assert app_peer is not None and app_peer.occasions == 2
    # on a small fleet a role of four hosts (the developers' workstations of 14 hosts)
    # still tells hosts apart
    assert path_weights({"/usr/lib/slack/slack": 4}, 14)["/usr/lib/slack/slack"] > 0
    assert routine_peer(answer, "db-02", JAVA17, 0, {"db-02", "db-00"}, weights) is None
    assert similarity({nginx, curl}, {bash, curl}, weights) == 0.0  # only the common curl
    assert spread_occasions([0, 8, 16, 24, 32, 40, 48], 24) == 3  # every 2 h for a day
    assert count_occasions([0, 8, 16, 24, 32, 40, 48], 24) == 1
    # two shards' answers: 10 + 7 other hosts use the path, too many to seek peers among
    one, two = [[["a", [bash]]], [[["b", 3]]], 10], [[["c", [bash]]], [[["d", 3]]], 7]
    assert merge_answers([one, two]) == [[], [[]], 17]
    assert merge_answers([one, [[], [[]], 6]]) == [[["a", [bash]]], [[["b", 3]]], 16]


def test_an_upgrade_on_two_of_twelve_hosts_is_one_signal(
    mature_fleet_store: Store, settings: DetectSettings
) -> None:
    """JDK 17 → 21 where only two hosts run java (its name is not routine in the fleet):
    each host's own java makes the new path an upgrade, so the second host is counted on
    the first one's signal, not signalled again."""
    first, second = RUNNERS
    use(mature_fleet_store, first, JAVA21, FIRST)
    (lead,) = docs_for(run(mature_fleet_store, settings, FIRST), JAVA21)
    assert lead["host"]["name"] == first and "an upgrade, or a masquerade?" in lead["reason"]
    later = FIRST + 2 * HOUR
    use(mature_fleet_store, second, JAVA21, later)
    result = run(mature_fleet_store, settings, later)
    assert docs_for(result, JAVA21) == [] and result.suppressed >= 1
    (finding,) = why(
        mature_fleet_store, settings, second, JAVA21, later - later % SPAN + 2 * SPAN
    ).findings
    assert finding.outcome.value == "rollout" and finding.signal == lead["id"]
    assert finding.explanation["rollout"]["upgrade"] is True
