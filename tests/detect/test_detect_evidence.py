"""Two pieces of evidence beyond rarity, on the hand-built fleet of test_detect (24 web
servers, 3 db servers running bash health checks to 10.0.0.9, 4 days):

* a shell holding a socket to an address no shell of its name used in the fleet (d):
  a bash web shell on a host only hours old is signalled, a new db server's health
  check is not;
* an upgrade (a known program at a new package-managed path in its first week) reaching
  hosts one by one over two days pages once, while the same hops from a writable path
  page on every host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.hand_fleet import END, SPAN, START, WEB, routine_lines
from support.osquery_lines import socket_line

from rarenet.baseline.config import Config, load_config
from rarenet.baseline.detect.backtest import backtest
from rarenet.baseline.detect.decide import Outcome
from rarenet.baseline.detect.why import why
from rarenet.baseline.store import Store

pytestmark = pytest.mark.slow

HOUR = 3600
JOINED = END - 8 * HOUR  # two hosts join the fleet 8 hours before the end
SHELL_AT = END - 2 * HOUR


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(None, env={})


def newcomers() -> list[bytes]:
    """web-new serves nginx from JOINED; db-new runs the db servers' bash health check;
    two hours before the end web-new's web application spawns a bash reverse shell."""
    out = []
    for bucket in range(JOINED, END, SPAN):
        out.append(
            socket_line(
                "web-new",
                bucket + 5,
                pid=800,
                name="nginx",
                path="/usr/sbin/nginx",
                remote_address="198.51.100.44",
                remote_port=51000,
                local_port=443,
                direction="inbound",
                username="www-data",
            )
        )
        out.append(
            socket_line(
                "db-new",
                bucket + 7,
                pid=900,
                name="bash",
                path="/usr/bin/bash",
                cmdline="bash /usr/local/bin/health",
                remote_address="10.0.0.9",
                remote_port=5432,
                username="postgres",
            )
        )
    out.append(
        socket_line(
            "web-new",
            SHELL_AT + 11,
            pid=7001,
            name="bash",
            path="/usr/bin/bash",
            cmdline="bash -i",
            remote_address="203.0.113.7",
            remote_port=4444,
        )
    )
    return out


def hops(path: str, hosts: list[str], first: int, every: int) -> list[bytes]:
    """`path` (process name curl) used by one more host every `every` seconds, each host
    then using it every bucket until the end."""
    out = []
    for number, host in enumerate(hosts):
        for bucket in range(first + number * every, END, SPAN):
            out.append(
                socket_line(
                    host,
                    bucket + 13,
                    pid=3100 + number,
                    name="curl",
                    path=path,
                    cmdline="curl -s https://203.0.113.80/",
                    remote_address="203.0.113.80",
                    remote_port=443,
                    username="root",
                )
            )
    return out


def replay(tmp_path: Path, config: Config, extra: list[bytes], start: int) -> list[Any]:
    """Backtest the fleet plus `extra` from `start`; the replayed store stays in tmp_path."""
    log = tmp_path / "fleet.log"
    log.write_bytes(b"".join([*routine_lines(), *extra]))
    result = backtest(
        [str(log)], config, start=start, workdir=str(tmp_path), replay_path=tmp_path / "r.db"
    )
    return list(result.signals)


def counted_on(tmp_path: Path, sid: str) -> int:
    with Store(tmp_path / "r.db") as store:
        row = store.conn.execute("SELECT suppressed_count FROM signals WHERE id = ?", (sid,))
        return int(row.fetchone()[0])


def test_a_web_shell_on_a_young_host_is_signalled_and_a_health_check_is_not(
    tmp_path: Path, config: Config
) -> None:
    signals = replay(tmp_path, config, newcomers(), JOINED)
    found = {(s["host"]["name"], s["process"]["executable"]): s for s in signals}
    assert ("db-new", "/usr/bin/bash") not in found, "the health check's address is known"
    shell = found["web-new", "/usr/bin/bash"]
    host = shell["explanation"]["host"]
    assert host["maturity"] < 0.2 and host["fresh_destination"] is True
    assert shell["explanation"]["decided_by"] == "host novelty" and shell["score"] == 60.0
    assert "no bash in the fleet used before" in shell["reason"]
    assert "of a mature host's history" in shell["reason"]


UPGRADED = "/usr/lib/curl-8.9/bin/curl"  # package-managed; the name curl is routine


def test_an_upgrade_reaching_hosts_one_by_one_pages_once(tmp_path: Path, config: Config) -> None:
    first = START + 36 * HOUR
    hosts = WEB[:12]  # one more web server every 4 hours: 44 hours in all
    signals = replay(tmp_path, config, hops(UPGRADED, hosts, first, 4 * HOUR), first)
    upgrade = [s for s in signals if s["process"]["executable"] == UPGRADED]
    assert len(upgrade) == 1, [(s["host"]["name"], s["score"], s["reason"]) for s in upgrade]
    assert upgrade[0]["host"]["name"] == hosts[0]
    # every later host is counted on that one signal, none dropped silently
    assert counted_on(tmp_path, upgrade[0]["id"]) >= len(hosts) - 1


def test_the_same_hops_from_a_writable_path_page_on_every_host(
    tmp_path: Path, config: Config
) -> None:
    first = START + 36 * HOUR
    hosts = WEB[:4]
    implant = "/var/tmp/.cache/curl"
    signals = replay(tmp_path, config, hops(implant, hosts, first, 4 * HOUR), first)
    reached = [s["host"]["name"] for s in signals if s["process"]["executable"] == implant]
    assert sorted(reached) == sorted(hosts)
    assert all(s["kind"] == "host" for s in signals if s["process"]["executable"] == implant)


def test_a_shell_is_never_a_rollout(tmp_path: Path, config: Config) -> None:
    """Reverse shells from a shell no host used with the network (`dash -i` to :4444 on
    four web servers within three hours: a worm, or an operator going round) are four
    signals, none explained away as a package reaching hosts; the explanation still says
    the path is package-managed."""
    first = START + 60 * HOUR
    hosts = WEB[:4]
    shells = [
        socket_line(
            host,
            first + number * 45 * 60 + 17,
            pid=6100 + number,
            name="dash",
            path="/usr/bin/dash",
            cmdline="dash -i",
            remote_address="203.0.113.7",
            remote_port=4444,
        )
        for number, host in enumerate(hosts)
    ]
    signals = [s for s in replay(tmp_path, config, shells, first) if s["process"]["name"] == "dash"]
    assert sorted(s["host"]["name"] for s in signals) == sorted(hosts), [
        (s["host"]["name"], s["score"], s["reason"]) for s in signals
    ]
    for signal in signals:
        assert signal["kind"] == "host" and not signal["reason"].startswith("rollout?")
        rollout = signal["explanation"]["rollout"]
        assert rollout["discount"] == 0.0 and rollout["may_roll_out"] is False
        assert rollout["package_managed"] is True


def test_a_deployments_first_day_discounts_package_programs_only(
    tmp_path: Path, config: Config
) -> None:
    """Seven hours after rarenet first saw the fleet, a package program never seen yet
    (a daily job's first run, or nc) keeps 7/24 of its fleet rarity and is not signalled;
    a dropper in /tmp at the same time is; the same nc on the second day is."""
    early, later = START + 7 * HOUR, START + 31 * HOUR
    nc = "/usr/bin/nc.openbsd"
    extra = [
        socket_line("web-03", early + 20, pid=4100, name="nc", path=nc, remote_port=4444),
        socket_line("web-04", early + 20, pid=4101, name="beacon", path="/tmp/.x/beacon"),
        socket_line("web-05", later + 20, pid=4102, name="nc", path=nc, remote_port=4444),
    ]
    signals = replay(tmp_path, config, extra, START)
    found = {(s["host"]["name"], s["process"]["executable"]): s for s in signals}
    assert ("web-03", nc) not in found
    assert ("web-04", "/tmp/.x/beacon") in found
    assert found["web-04", "/tmp/.x/beacon"]["score"] >= 90
    assert found["web-05", nc]["explanation"]["fleet"]["day_covered"] == 1.0
    # nc is on every host and only now talks: never "newly installed?"
    assert found["web-05", nc]["explanation"]["newly_installed"] is False
    with Store(tmp_path / "r.db") as store:
        answer = why(store, config.detect, "web-03", nc, early - early % SPAN + 2 * SPAN)
    (finding,) = answer.findings
    assert finding.explanation["fleet"]["day_covered"] == pytest.approx(7 / 24, abs=0.02)
    assert finding.score < 50 and "of its first day" in finding.reason


def test_a_fresh_install_is_said_plainly_and_ranked_below_a_dropper(
    tmp_path: Path, config: Config
) -> None:
    """A new program at a package-managed path (an app in /opt) is "newly installed?",
    scored below a never-seen dropper in a hidden directory at the same moment."""
    at = START + 60 * HOUR
    extra = [
        socket_line(
            "web-06", at + 20, pid=4200, name="zoom", path="/opt/zoom/zoom", remote_port=443
        ),
        socket_line("web-07", at + 20, pid=4201, name="zoomd", path="/var/tmp/.z/zoomd"),
    ]
    signals = replay(tmp_path, config, extra, at - 4 * HOUR)
    found = {s["process"]["executable"]: s for s in signals}
    app, dropper = found["/opt/zoom/zoom"], found["/var/tmp/.z/zoomd"]
    assert app["explanation"]["newly_installed"] is True
    assert app["reason"].startswith("newly installed? /opt/zoom/zoom on web-06: first seen in")
    assert dropper["explanation"]["newly_installed"] is False
    assert "newly installed" not in dropper["reason"]
    assert app["score"] < dropper["score"]


def test_a_tool_a_person_installs_talking_where_the_fleet_talks_is_not_a_shell_to_4444(
    tmp_path: Path, config: Config
) -> None:
    """A new tool in a home directory whose first connection goes to the address and port
    every host's curl uses is scored at half (0 signals, the reason says why); the same
    tool on another host talking to a never-seen address, a dropper, and a dual-use tool
    to the familiar address are signalled in full (docs/scoring.md "Fresh installs")."""
    at = START + 60 * HOUR
    familiar = {"remote_address": "203.0.113.80", "remote_port": 443}
    gh = "/home/alice/.local/bin/gh"
    extra = [
        socket_line("web-08", at + 20, pid=4300, name="gh", path=gh, **familiar),
        socket_line("web-09", at + 20, pid=4301, name="gh", path=gh.replace("alice", "bob")),
        socket_line(
            "web-10", at + 20, pid=4302, name="kswapd", path="/dev/shm/.k/kswapd", **familiar
        ),
        socket_line("web-11", at + 20, pid=4303, name="socat", path="/home/eve/socat", **familiar),
    ]
    signals = replay(tmp_path, config, extra, at - 4 * HOUR)
    found = {s["host"]["name"]: s for s in signals if s["process"]["name"] != "nginx"}
    assert "web-08" not in found
    assert {"web-09", "web-10", "web-11"} <= set(found)
    assert found["web-09"]["explanation"]["destination"]["familiar"] is False
    assert found["web-09"]["explanation"]["destination"]["other_hosts_before"] == 0
    assert found["web-10"]["explanation"]["destination"]["other_hosts_at_least"] is True
    assert found["web-10"]["explanation"]["destination"]["familiar"] is False  # a dropper
    assert found["web-11"]["explanation"]["destination"]["familiar"] is False  # dual-use
    with Store(tmp_path / "r.db") as store:
        answer = why(store, config.detect, "web-08", gh, at - at % SPAN + 2 * SPAN)
    (finding,) = answer.findings
    assert finding.explanation["destination"] == {
        "address": "203.0.113.80",
        "port": 443,
        "kind": "external",
        "other_hosts_before": 2,
        "other_hosts_at_least": True,
        "this_host_before": True,
        "binary_elsewhere_before": 0,
        "binary_elsewhere_at_least": False,
        "familiar": True,
        "discount": 0.5,
    }
    assert finding.score == pytest.approx(finding.explanation["score_without_rollout"] / 2, abs=0.1)
    assert "is one 2+ other host(s) use for other programs: a fresh install?" in finding.reason


def test_a_binary_spreading_to_one_address_never_makes_it_familiar(
    tmp_path: Path, config: Config
) -> None:
    """A new program at a package path (no dual-use name) reaching three hosts hours
    apart, each calling the same address: that address is familiar only through the
    binary's own spread, so no host's signal is discounted — each is signalled."""
    first = START + 60 * HOUR
    path = "/usr/lib/x86_64-linux-gnu/kmod-helper"
    extra = [
        socket_line(host, first + n * 3 * HOUR + 20, pid=4400 + n, name="kmod-helper", path=path,
             remote_address="198.51.100.99", remote_port=8443)
        for n, host in enumerate(WEB[12:15])
    ]  # fmt: skip
    signals = replay(tmp_path, config, extra, first - 4 * HOUR)
    reached = {s["host"]["name"]: s for s in signals if s["process"]["executable"] == path}
    assert sorted(reached) == WEB[12:15]
    assert all(not s["explanation"]["destination"]["familiar"] for s in reached.values())
    assert reached[WEB[14]]["explanation"]["destination"]["other_hosts_before"] == 0
    # … and says that the binary's own earlier hosts talked there
    assert reached[WEB[14]]["explanation"]["destination"]["binary_elsewhere_before"] == 2
    assert reached[WEB[12]]["explanation"]["destination"]["binary_elsewhere_before"] == 0


def _app_hops(path: str, hosts: list[str], first: int, uid: int, user: str) -> list[bytes]:
    """`path` (notes, to 192.0.2.77:443) started on one more host every 6¼ hours by
    `user`, each host then using it hourly until the end."""
    out = []
    for number, host in enumerate(hosts):
        for bucket in range(first + number * (6 * HOUR + SPAN), END, 4 * SPAN):
            out.append(
                socket_line(host, bucket + 29, pid=5200 + number, name="notes", path=path,
                     cmdline=path, remote_address="192.0.2.77", remote_port=443,
                     uid=str(uid), username=user)
            )  # fmt: skip
    return out


APP = "/opt/notes/notes"


def test_an_app_people_install_pages_once_and_the_same_hops_as_a_service_on_every_host(
    tmp_path: Path, config: Config
) -> None:
    """A new program in /opt that a person starts on one more host every 6 hours (an app
    people install: later hosts counted on the first host's signal, saying why), and the
    same hops started by www-data — a service account, as an implant behind a web server
    would run: a signal on every host."""
    first = START + 60 * HOUR
    hosts = WEB[12:15]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    by_people = replay(tmp_path / "a", config, _app_hops(APP, hosts, first, 1000, "dev"), first)
    app = [s for s in by_people if s["process"]["executable"] == APP]
    assert [s["host"]["name"] for s in app] == [hosts[0]], [
        (s["host"]["name"], s["score"], s["reason"]) for s in app
    ]
    assert counted_on(tmp_path / "a", app[0]["id"]) >= len(hosts) - 1
    with Store(tmp_path / "a" / "r.db") as store:
        finding = why(store, config.detect, hosts[1], APP, first + 6 * HOUR + 2 * SPAN).findings[0]
    assert finding.explanation["rollout"]["app"] is True
    assert finding.explanation["rollout"]["discount"] == 1.0
    assert finding.outcome is Outcome.ROLLOUT and finding.signal == app[0]["id"]
    assert finding.sentence.startswith(f"one host of an app people install ({APP}): counted")
    by_service = replay(tmp_path / "b", config, _app_hops(APP, hosts, first, 33, "www-data"), first)
    reached = [s["host"]["name"] for s in by_service if s["process"]["executable"] == APP]
    assert sorted(reached) == hosts
