"""The synthetic fleet: hosts, their roles, addresses and life events, all from the seed."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rarenet.baseline.simulate.catalogue import USER_TOOLS
from rarenet.baseline.simulate.roles import DEV_NAMES, ROLES
from rarenet.baseline.simulate.spec import SimulationSpec

NEVER = 2**62
HOUR = 3600
SUBNETS = {"web": 10, "db": 20, "ci": 30, "dev": 40, "bastion": 50, "cache": 60, "misc": 70}
# Local time zones (seconds east of UTC) of people-driven hosts; servers run on UTC.
PEOPLE_TZ = (0, 0, 3600, 3600, 7200, -5 * HOUR, -8 * HOUR)
AGENT_STAGGER = 3 * HOUR  # the monitoring agent reaches every host within this
UPGRADE_STAGGER = 3 * HOUR


@dataclass(frozen=True, slots=True)
class Host:
    """One machine of the fleet and everything fixed about it."""

    index: int
    name: str
    uuid: str
    role: str  # web, db, ci, dev, bastion, cache, misc
    flavor: str  # role variant with its own routine (cache/queue, k8s/mail, ...)
    ip4: str
    ip6: str  # "" when the host has no IPv6
    poll_offset: int  # second of the minute at which osquery polls
    join: int  # first data time (the start, or later for hosts joining mid-way)
    batch: bool  # logs with --logger_event_type=false (diffResults)
    legacy: bool  # an older osquery writing "hostname" instead of "hostIdentifier"
    tz: int  # seconds east of UTC of "local" time
    work: tuple[int, int]  # local working hours, seconds of the day
    user: str  # interactive user (developer workstations)
    uid: int
    netns: str  # network namespace of its Kubernetes pods
    agent_at: int  # when the monitoring agent is installed (NEVER if not in this run)
    upgrade_at: int  # when the JDK upgrade reaches it (NEVER if not in this run)
    leave: int = NEVER  # last data time + 1 (a re-imaged host disappears; --scenarios all)


@dataclass(frozen=True, slots=True)
class ToolInstall:
    """A developer installs a user tool and uses it from then on (benign but rare)."""

    host: int
    tool: str
    at: int


@dataclass(frozen=True)
class Fleet:
    """All hosts of a run plus fleet-wide events."""

    hosts: tuple[Host, ...]
    start: int
    end: int
    agent_rollout: int | None  # when the agent rollout begins
    upgrade_rollout: int | None  # when the JDK 17 → 21 upgrade begins on CI runners
    installs: tuple[ToolInstall, ...]

    def addresses(self) -> dict[str, tuple[str, ...]]:
        """IPv4 addresses of the hosts by flavor."""
        found: dict[str, list[str]] = {}
        for host in self.hosts:
            found.setdefault(host.flavor, []).append(host.ip4)
        return {flavor: tuple(ips) for flavor, ips in found.items()}


def largest_remainder(shares: Sequence[float], total: int) -> list[int]:
    """Split `total` into whole counts proportional to `shares`."""
    scale = total / sum(shares)
    counts = [int(share * scale) for share in shares]
    order = sorted(range(len(shares)), key=lambda i: (counts[i] - shares[i] * scale, i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _slots(total: int) -> list[tuple[str, str, str, int]]:
    """(role, flavor, hostname prefix, digits) for each host, grouped by role."""
    slots: list[tuple[str, str, str, int]] = []
    role_counts = largest_remainder([share for share, _ in ROLES.values()], total)
    for (role, (_, flavors)), count in zip(ROLES.items(), role_counts, strict=True):
        flavor_counts = largest_remainder([f[1] for f in flavors], count)
        for (flavor, _, prefix, digits), n in zip(flavors, flavor_counts, strict=True):
            slots.extend([(role, flavor, prefix, digits)] * n)
    return slots


def _hostname(prefix: str, digits: int, number: int) -> str:
    if digits == 0:  # developer workstations are named after their user
        name = DEV_NAMES[(number - 1) % len(DEV_NAMES)]
        lap = (number - 1) // len(DEV_NAMES)
        return f"{prefix}-{name}{lap + 1 if lap else ''}"
    return f"{prefix}-{number:0{digits}d}"


def _addresses(role: str, number: int, ipv6: bool) -> tuple[str, str]:
    idx = number - 1
    second = SUBNETS[role] + idx // (250 * 256)
    third, fourth = idx // 250 % 256, idx % 250 + 10
    ip6 = f"fd00:ac:{second:x}:{third:x}::{fourth:x}" if ipv6 else ""
    return f"10.{second}.{third}.{fourth}", ip6


def _rollout_start(spec: SimulationSpec, fraction: float, min_period: int) -> int | None:
    period = spec.end - spec.start
    if period < min_period:
        return None
    return spec.start + round(period * fraction / HOUR) * HOUR


@dataclass(frozen=True, slots=True)
class _Traits:
    join: dict[int, int]
    batch: frozenset[int]
    legacy: frozenset[int]
    ipv6: frozenset[int]


def _traits(spec: SimulationSpec, rng: random.Random) -> _Traits:
    """Which hosts join late, log in batch format, run old osquery or have IPv6."""
    n, period = spec.hosts, spec.end - spec.start
    many = n >= 5
    joining = rng.sample(range(n), round(0.1 * n) if many else 0)
    join = {i: spec.start + int(rng.uniform(0.1, 0.7) * period) for i in joining}
    batch = frozenset(rng.sample(range(n), round(0.1 * n) if many else 0))
    legacy = frozenset(rng.sample(range(n), max(1, round(0.02 * n)) if n >= 10 else 0))
    ipv6 = frozenset(rng.sample(range(n), round(0.15 * n)))
    return _Traits(join, batch, legacy, ipv6)


def _host(
    spec: SimulationSpec,
    rng: random.Random,
    index: int,
    slot: tuple[str, str, str, int],
    number: int,
    traits: _Traits,
    rollouts: tuple[int | None, int | None],
) -> Host:
    role, flavor, prefix, digits = slot
    name = _hostname(prefix, digits, number)
    ip4, ip6 = _addresses(role, number, index in traits.ipv6)
    people = role in ("dev", "ci")
    tz = rng.choice(PEOPLE_TZ) if people else 0
    work = (8 * HOUR + rng.randint(-2700, 2700), 19 * HOUR + rng.randint(-3600, 1800))
    join = traits.join.get(index, spec.start)
    agent, upgrade = rollouts
    agent_at = NEVER if agent is None else max(join, agent + rng.randrange(AGENT_STAGGER))
    upgrade_at = NEVER
    if upgrade is not None and flavor == "ci":
        upgrade_at = max(join, upgrade + rng.randrange(UPGRADE_STAGGER))
    return Host(
        index=index,
        name=name,
        uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        role=role,
        flavor=flavor,
        ip4=ip4,
        ip6=ip6,
        poll_offset=rng.randrange(60),
        join=join,
        batch=index in traits.batch,
        legacy=index in traits.legacy,
        tz=tz,
        work=work,
        user=name.removeprefix("dev-") if role == "dev" else "",
        uid=1000 + rng.randrange(4) if role == "dev" else 0,
        netns=f"4026532{rng.randrange(200, 1000)}",
        agent_at=agent_at,
        upgrade_at=upgrade_at,
    )


def _installs(spec: SimulationSpec, hosts: Sequence[Host], rng: random.Random) -> list[ToolInstall]:
    devs = [h for h in hosts if h.role == "dev"]
    count = min(len(devs), 1 + spec.hosts // 60)
    tools = sorted(USER_TOOLS)
    rng.shuffle(tools)
    period = spec.end - spec.start
    installs = []
    for i, host in enumerate(rng.sample(devs, count)):
        earliest = max(host.join, spec.start + int(0.1 * period))
        at = int(rng.uniform(earliest, spec.end - 0.1 * period))
        installs.append(ToolInstall(host.index, tools[i % len(tools)], at))
    return installs


def _reimage(spec: SimulationSpec, hosts: list[Host], rng: random.Random) -> None:
    """Re-imaged hosts (--scenarios all): about 2 % of the founders (at least one)
    stop mid-run and a new host id of the same role and address takes over."""
    period = spec.end - spec.start
    founders = [h for h in hosts if h.join == spec.start and h.role != "dev"]
    for old in rng.sample(founders, min(len(founders), max(1, len(hosts) // 50))):
        at = spec.start + int(rng.uniform(0.35, 0.65) * period)
        hosts[old.index] = replace(old, leave=at)
        hosts.append(
            replace(
                old,
                index=len(hosts),
                name=f"{old.name}-r",
                uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                join=at,
                agent_at=max(at, old.agent_at),
                upgrade_at=max(at, old.upgrade_at),
            )
        )


def build_fleet(spec: SimulationSpec) -> Fleet:
    """The fleet of a run: the same spec always gives the same hosts."""
    rng = random.Random(f"rarenet-simulate:{spec.seed}:fleet")
    traits = _traits(spec, rng)
    agent = _rollout_start(spec, 1 / 3, 12 * HOUR)
    upgrade = _rollout_start(spec, 0.6, 24 * HOUR)
    if agent is not None and agent + AGENT_STAGGER + HOUR > spec.end:
        agent = None
    numbers: dict[str, int] = {}
    hosts = []
    for index, slot in enumerate(_slots(spec.hosts)):
        numbers[slot[2]] = numbers.get(slot[2], 0) + 1
        hosts.append(_host(spec, rng, index, slot, numbers[slot[2]], traits, (agent, upgrade)))
    installs = _installs(spec, hosts, rng)
    if spec.scenarios == "all":
        _reimage(spec, hosts, random.Random(f"rarenet-simulate:{spec.seed}:reimage"))
    return Fleet(tuple(hosts), spec.start, spec.end, agent, upgrade, tuple(installs))


def poll_time(t: int, offset: int) -> int:
    """The first osquery poll at or after `t` of a host polling at `offset` s past the minute."""
    return t + (offset - t) % 60
