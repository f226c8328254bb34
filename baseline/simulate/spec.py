"""What one simulation run is asked to produce, and what it produced."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rarenet.baseline.errors import InputError

DEFAULT_START = 1767571200  # 2026-01-05T00:00:00Z, a Monday
FORMATS = ("osquery", "fleet")
# classic: the 11 techniques of --attacks plus the built-in rollouts and user tools;
# all: also the scenario families of baseline/simulate/families.py (docs/quality.md).
SCENARIOS = ("classic", "all")
MIN_SCENARIO_DAYS = 2.0
MAX_HOSTS = 1_000_000
MAX_DAYS = 400.0
# Attacks begin after max(25 % of the period, 6 h) and the longest lasts 2.5 h.
ATTACK_EARLIEST = 6 * 3600
ATTACK_LONGEST = 9000
MIN_ATTACK_DAYS = 0.375


@dataclass(frozen=True)
class SimulationSpec:
    """The arguments of `rarenet simulate`; the same spec always gives the same bytes."""

    hosts: int
    days: float
    attacks: bool = False
    seed: int = 1
    start: int = DEFAULT_START
    format: str = "osquery"
    scenarios: str = "classic"

    @property
    def end(self) -> int:
        """Data time (unix seconds) just after the last possible row."""
        return self.start + max(60, round(self.days * 86400))

    def validate(self) -> None:
        """Raise InputError naming the bad argument."""
        if isinstance(self.hosts, bool) or not isinstance(self.hosts, int):
            raise InputError(f"--hosts must be a whole number, got {self.hosts!r}")
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise InputError(
                f"--hosts must be between 1 and {MAX_HOSTS:,}, got {self.hosts}",
                hint="use e.g. --hosts 200",
            )
        if not math.isfinite(self.days) or not 0 < self.days <= MAX_DAYS:
            raise InputError(
                f"--days must be more than 0 and at most {MAX_DAYS:g}, got {self.days}",
                hint="fractions are fine, e.g. --days 0.5",
            )
        if self.format not in FORMATS:
            raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.scenarios not in SCENARIOS:
            raise InputError(
                f"--scenarios must be one of {', '.join(SCENARIOS)}, got {self.scenarios!r}"
            )
        if self.scenarios != "classic" and self.days < MIN_SCENARIO_DAYS:
            raise InputError(
                f"--scenarios {self.scenarios} needs --days {MIN_SCENARIO_DAYS:g} or more, "
                f"got {self.days}",
                hint="tools are used again on another day and rollouts take a day",
            )
        if self.attacks and self.days < MIN_ATTACK_DAYS:
            raise InputError(
                f"--attacks needs --days {MIN_ATTACK_DAYS} (9 h) or more, got {self.days}",
                hint="attacks start after 6 h of history and the longest lasts 2.5 h",
            )


@dataclass(frozen=True)
class SimulationResult:
    """Counts of what a run wrote."""

    lines: int
    rows: int
    hosts: int
    attacks: int
    start: int
    end: int
