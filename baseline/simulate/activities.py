"""When things happen on a host: activity schedules (rate, timer, daily job, one-off)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rarenet.baseline.simulate.attacks import AttackPlan
from rarenet.baseline.simulate.catalogue import FLOWS, UPGRADES
from rarenet.baseline.simulate.roles import (
    AGENT,
    DAILY,
    FIXED,
    FLAT,
    MONTHLY,
    OFFICE,
    PERIODIC,
    QUARTERLY,
    RATE,
    WEEKLY,
    ActivitySpec,
)

if TYPE_CHECKING:
    from rarenet.baseline.simulate.timeline import HostSim

_log = math.log


def _single_flow(spec: ActivitySpec) -> str:
    """The flow key when each occurrence is exactly one socket of a fixed program, else ""."""
    simple = len(spec.flows) == 1 and spec.burst == (1, 1) and not spec.choose
    if simple and not spec.restart and FLOWS[spec.flows[0]].program not in UPGRADES:
        return spec.flows[0]
    return ""


class Activity:
    """Something that fires at times of its choosing; `after` gives the next time."""

    __slots__ = ("single", "spec")

    def __init__(self, spec: ActivitySpec) -> None:
        self.spec = spec
        self.single = _single_flow(spec)

    def first(self, sim: HostSim, begin: float) -> float:
        """The first time at or after `begin`."""
        return self.after(sim, begin)

    def after(self, sim: HostSim, t: float) -> float:
        """The next time after `t` (infinity: never again)."""
        return math.inf

    def fire(self, sim: HostSim, t: float) -> None:
        """Open this activity's sockets at `t`."""
        if self.single:
            sim.open_one(self.single, t)
        else:
            sim.occur(self.spec, t)


class Rate(Activity):
    """Poisson arrivals, thinned by the time-of-day profile."""

    __slots__ = ()

    def after(self, sim: HostSim, t: float) -> float:
        rand, every, profile = sim.rng.random, self.spec.every, self.spec.profile
        t -= _log(1.0 - rand()) * every
        if profile != FLAT:
            while rand() >= sim.weight(profile, t):
                t -= _log(1.0 - rand()) * every
        return t


class Periodic(Activity):
    """A timer with ±30 % jitter."""

    __slots__ = ()

    def first(self, sim: HostSim, begin: float) -> float:
        return begin + sim.rng.random() * self.spec.every

    def after(self, sim: HostSim, t: float) -> float:
        return t + self.spec.every * (0.7 + 0.6 * sim.rng.random())


class Daily(Activity):
    """A job at a fixed local time each day (or on one weekday), ± 3 minutes."""

    __slots__ = ("at", "weekday")

    def __init__(self, spec: ActivitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        low, high = spec.window
        self.at = rng.uniform(low, high) * 3600
        self.weekday = rng.randrange(7) if spec.kind == WEEKLY else -1

    def first(self, sim: HostSim, begin: float) -> float:
        return self._from_day(sim, begin, int((begin + sim.host.tz) // 86400))

    def after(self, sim: HostSim, t: float) -> float:
        return self._from_day(sim, t + 600, int((t + sim.host.tz) // 86400) + 1)

    def _from_day(self, sim: HostSim, not_before: float, day: int) -> float:
        while True:
            if self.weekday < 0 or (day + 3) % 7 == self.weekday:  # day 0 was a Thursday
                when = day * 86400 - sim.host.tz + self.at + sim.rng.uniform(-180, 180)
                if when >= not_before:
                    return when
            day += 1


class Monthly(Activity):
    """A job at a fixed local time on one day of the month (1–28), every month or every
    third month, ± 3 minutes: each host draws its own day, hour and month."""

    __slots__ = ("at", "day", "every", "phase")

    def __init__(self, spec: ActivitySpec, rng: random.Random) -> None:
        super().__init__(spec)
        low, high = spec.window
        self.at = rng.uniform(low, high) * 3600
        self.day = rng.randint(1, 28)
        self.every = 3 if spec.kind == QUARTERLY else 1
        self.phase = rng.randrange(self.every)

    def first(self, sim: HostSim, begin: float) -> float:
        return self._next(sim, begin)

    def after(self, sim: HostSim, t: float) -> float:
        return self._next(sim, t + 86400)

    def _next(self, sim: HostSim, not_before: float) -> float:
        local = datetime.fromtimestamp(not_before + sim.host.tz, UTC)
        year, month = local.year, local.month
        for _ in range(30):  # bounded: the next month of the schedule is ≤ 3 months on
            if (year * 12 + month - 1) % self.every == self.phase:
                midnight = datetime(year, month, self.day, tzinfo=UTC).timestamp()
                when = midnight - sim.host.tz + self.at + sim.rng.uniform(-180, 180)
                if when >= not_before:
                    return when
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return math.inf


class Fixed(Activity):
    """At its start, then every `every` seconds ± 3 minutes (a job several hosts start
    at the same moment, e.g. a new weekly cron job)."""

    __slots__ = ()

    def first(self, sim: HostSim, begin: float) -> float:
        return begin + sim.rng.uniform(0, 180)

    def after(self, sim: HostSim, t: float) -> float:
        return t + self.spec.every + sim.rng.uniform(-180, 180)


class Once(Activity):
    """Fire once, when added (a socket already open at the first poll)."""

    __slots__ = ()

    def first(self, sim: HostSim, begin: float) -> float:
        return begin


class Attack(Activity):
    """A planned attack: its rows at the technique's offsets."""

    __slots__ = ("plan",)

    def __init__(self, plan: AttackPlan) -> None:
        super().__init__(AGENT)
        self.plan = plan

    def first(self, sim: HostSim, begin: float) -> float:
        return float(self.plan.start)

    def fire(self, sim: HostSim, t: float) -> None:
        sim.attack(self.plan)


_KINDS: dict[str, Callable[[ActivitySpec, random.Random], Activity]] = {
    RATE: lambda spec, _rng: Rate(spec),
    PERIODIC: lambda spec, _rng: Periodic(spec),
    DAILY: Daily,
    WEEKLY: Daily,
    MONTHLY: Monthly,
    QUARTERLY: Monthly,
    FIXED: lambda spec, _rng: Fixed(spec),
}


def make_activity(spec: ActivitySpec, rng: random.Random) -> Activity:
    """The schedule of an activity spec (daily jobs draw their time of day from `rng`)."""
    return _KINDS[spec.kind](spec, rng)


def tool_activity(tool: str) -> ActivitySpec:
    """A developer's freshly installed tool, used during working hours."""
    return ActivitySpec((f"tool:{tool}",), RATE, 5400.0, OFFICE, open_at_start=True)
