"""Host roles as data: fleet shares, hostnames and each role's network routine.

An activity's `every` is the mean time between *observed* new sockets (osquery polls
every 60 s, so most short connections between polls are never seen); a `profile`
weights it by time of day. Volumes aim at ~150–600 rows per host per day.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE, PERIODIC, DAILY, WEEKLY, FIXED = "rate", "periodic", "daily", "weekly", "fixed"
MONTHLY, QUARTERLY = "monthly", "quarterly"
FLAT, WEB, OFFICE, OPS, CI = "flat", "web", "office", "ops", "ci"


@dataclass(frozen=True, slots=True)
class ActivitySpec:
    """A recurring reason for a host to open sockets."""

    flows: tuple[str, ...]  # catalogue.FLOWS keys, opened in this order per occurrence
    kind: str = RATE
    every: float = 3600.0  # mean seconds between occurrences (RATE, PERIODIC)
    profile: str = FLAT  # time-of-day weighting (RATE)
    burst: tuple[int, int] = (1, 1)  # sockets per flow per occurrence
    window: tuple[float, float] = (0.0, 24.0)  # local hours in which DAILY/WEEKLY/… runs
    choose: tuple[str, ...] = ()  # one of these flows is added to each occurrence
    open_at_start: bool = False  # a long-lived socket already open at the host's first poll
    restart: float = 0.0  # chance per daemon of a restart (new pid) at each occurrence


def _rate(
    *flows: str,
    every: float,
    profile: str = FLAT,
    burst: tuple[int, int] = (1, 1),
    choose: tuple[str, ...] = (),
    open_at_start: bool = False,
) -> ActivitySpec:
    return ActivitySpec(
        flows, RATE, every, profile, burst, choose=choose, open_at_start=open_at_start
    )


def _periodic(*flows: str, every: float, open_at_start: bool = False) -> ActivitySpec:
    return ActivitySpec(flows, PERIODIC, every, open_at_start=open_at_start)


def _daily(
    *flows: str,
    hours: tuple[float, float],
    burst: tuple[int, int] = (1, 1),
    choose: tuple[str, ...] = (),
    restart: float = 0.0,
    kind: str = DAILY,
) -> ActivitySpec:
    return ActivitySpec(flows, kind, burst=burst, window=hours, choose=choose, restart=restart)


# role → (share of the fleet, [(flavor, share within the role, hostname prefix, digits)])
ROLES: dict[str, tuple[float, tuple[tuple[str, float, str, int], ...]]] = {
    "web": (0.30, (("web", 1.0, "web", 3),)),
    "db": (0.10, (("db", 1.0, "db", 3),)),
    "ci": (0.15, (("ci", 1.0, "ci-runner", 2),)),
    "dev": (0.25, (("dev", 1.0, "dev", 0),)),
    "bastion": (0.03, (("bastion", 1.0, "bastion", 2),)),
    "cache": (0.07, (("cache", 0.6, "cache", 2), ("queue", 0.4, "queue", 2))),
    "misc": (0.10, (("k8s", 0.7, "k8s-node", 2), ("mail", 0.3, "mail", 2))),
}

DEV_NAMES = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "ken",
    "laura",
    "mike",
    "nina",
    "oscar",
    "peggy",
    "quinn",
    "rupert",
    "sybil",
    "trent",
    "ursula",
    "victor",
    "wendy",
    "xavier",
    "yara",
    "zoe",
    "amir",
    "bea",
    "chen",
    "dana",
]

COMMON: tuple[ActivitySpec, ...] = (
    _periodic("scrape", every=900.0),
    _periodic("ntp", every=1800.0),
    _rate("dns-upstream", every=3600.0),
    _rate("osquery-tls", every=4 * 3600.0, open_at_start=True),
    _rate("ssh-in-bastion", every=4 * 3600.0, profile=OPS),
    _daily("apt-mirror", hours=(6.0, 7.0), burst=(2, 5), choose=("apt-docker",), restart=0.08),
)

AGENT = _periodic("agent", every=600.0, open_at_start=True)

BY_FLAVOR: dict[str, tuple[ActivitySpec, ...]] = {
    "web": (
        _rate("https-in", every=900.0, profile=WEB),
        _rate("http-in", every=3600.0, profile=WEB),
        _rate("nginx-upstream", every=3 * 3600.0),
        _rate("app-db", every=1800.0, open_at_start=True, burst=(1, 3)),
        _rate("app-cache", every=3600.0, open_at_start=True),
        _rate("app-queue", every=4 * 3600.0, open_at_start=True),
        _rate("app-dns", every=4 * 3600.0),
        _rate("app-payments", every=1800.0, profile=WEB),
        _daily("aws-logs", hours=(0.1, 0.5), burst=(1, 3)),
        _daily("certbot", hours=(2.0, 5.0), burst=(1, 3), kind=WEEKLY),
    ),
    "db": (
        _rate("pg-in", every=900.0, profile=WEB),
        _periodic("healthcheck", every=600.0),
        _rate("pg-replica", every=86400.0, open_at_start=True),
        _daily("pg_dump", "restic", "aws-backup", hours=(1.5, 3.0), burst=(2, 6)),
    ),
    "ci": (
        _rate("runner-poll", every=1800.0, open_at_start=True),
        _rate(
            "ci-git",
            every=1800.0,
            profile=CI,
            burst=(1, 2),
            choose=("ci-gradle17", "ci-npm", "ci-pip", "docker-pull", "docker-internal"),
        ),
    ),
    "dev": (
        _rate("dev-git", every=1800.0, profile=OFFICE),
        _rate("dev-ssh", every=3600.0, profile=OFFICE),
        _rate("dev-curl", every=3600.0, profile=OFFICE),
        _rate("dev-pip", every=7200.0, profile=OFFICE),
        _rate("dev-npm", every=5400.0, profile=OFFICE),
        _rate("docker-pull", every=7200.0, profile=OFFICE),
        _rate("code", every=1200.0, profile=OFFICE, open_at_start=True),
        _rate("code-local", every=5 * 3600.0, profile=OFFICE),
        _rate("slack", every=1800.0, profile=OFFICE, open_at_start=True),
        _rate("firefox", every=300.0, profile=OFFICE, open_at_start=True),
    ),
    "bastion": (
        _rate("admin-ssh-in", every=1200.0, profile=OPS),
        _rate("bastion-ssh", every=900.0, profile=OPS),
    ),
    "cache": (_rate("redis-in", every=900.0, profile=WEB, open_at_start=True),),
    "queue": (
        _rate("rabbit-in", every=900.0, profile=WEB, open_at_start=True),
        _rate("rabbit-cluster", every=86400.0, open_at_start=True),
    ),
    "k8s": (
        _rate("kubelet", every=3600.0, open_at_start=True),
        _rate("containerd-pull", every=7200.0),
        _rate("pod-db", every=1800.0, open_at_start=True),
        _rate("pod-in", every=1200.0, profile=WEB),
        _rate("coredns", every=1200.0),
    ),
    "mail": (
        _rate("smtp-out", every=1200.0, profile=WEB),
        _rate("smtp-in", every=1800.0, profile=WEB),
    ),
}

# Hourly (UTC) weight of internet-facing traffic.
WEB_CURVE = (
    0.35, 0.3, 0.25, 0.25, 0.25, 0.3, 0.4, 0.55, 0.7, 0.85, 0.95, 1.0,
    1.0, 1.0, 1.0, 1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4,
)  # fmt: skip
# Weight outside working hours (working hours weigh 1), by profile: (weekday night, weekend).
OFF_HOURS = {OFFICE: (0.03, 0.02), OPS: (0.15, 0.1), CI: (0.2, 0.08)}


def activities_for(flavor: str) -> tuple[ActivitySpec, ...]:
    """Everything a host of this flavor does (before rollouts and installs)."""
    return COMMON + BY_FLAVOR[flavor]
