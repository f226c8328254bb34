"""Delivery: when each simulated result line reaches rarenet (`rarenet simulate --arrivals`).

Results do not always arrive on time. A delivery plan is a list of *delays*, each a
window of data time on one host (or every host) whose lines all arrive at one later
moment: osquery buffers its results while it cannot reach Fleet and sends them on
reconnect. A line's arrival is the latest `arrives` of the delays holding its host and
data time, else its data time. The plan of `plan_delivery`:

* developer laptops offline 1–12 h now and then (about one spell per laptop in three
  days), their buffered results sent on reconnect;
* every second attack on a host that goes offline around it: from up to two hours
  before it began to 1–3 hours after it ended (the results of the attack arrive hours
  late, as in issue 29's gawk reverse shell);
* one rarenet outage of an hour (Fleet and the stream keep the results; they arrive
  when rarenet is back) and one Fleet outage of two hours that osquery buffers.

`rarenet backtest --arrivals FILE` replays in arrival order, so quality is measured as
the live service would see it. The file is JSON Lines: `{"host": name or null for every
host, "from", "to", "arrives"}`, times in unix seconds.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rarenet.baseline.simulate.labels import Label, read_json_lines
from rarenet.baseline.simulate.writer import Writable

HOUR = 3600
LAPTOP_ROLE = "dev"
SPELLS_PER_LAPTOP_DAY = 1 / 3
ARRIVAL_SLACK = 120  # seconds after reconnecting until the buffer is through


@dataclass(frozen=True)
class Delay:
    """Lines of `host` (None: every host) with data time in [start, end) arrive at `arrives`."""

    host: str | None
    start: int
    end: int
    arrives: int
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "from": self.start,
            "to": self.end,
            "arrives": self.arrives,
            "why": self.why,
        }


def plan_delivery(
    hosts: Sequence[tuple[str, str]], start: int, end: int, labels: Sequence[Label], seed: int
) -> list[Delay]:
    """The delivery plan of a fleet of (host name, role) from `start` to `end` whose
    attacks are `labels` (see the module docstring). Deterministic for a seed."""
    rnd = random.Random(f"delivery-{seed}")
    delays = []
    days = (end - start) / 86400
    for host, role in hosts:
        if role != LAPTOP_ROLE:
            continue
        for _ in range(round(days * SPELLS_PER_LAPTOP_DAY)):
            begin = rnd.randrange(start, max(start + 1, end - HOUR))
            length = rnd.randrange(HOUR, 12 * HOUR)
            delays.append(_offline(host, begin, min(end, begin + length), "laptop offline"))
    for n, label in enumerate(sorted(labels, key=lambda lb: (lb.start, lb.host))):
        if n % 2:
            continue
        begin = label.start - rnd.randrange(0, 2 * HOUR)
        until = label.end + rnd.randrange(HOUR, 3 * HOUR)
        delays.append(_offline(label.host, max(start, begin), until, "offline during an attack"))
    half = start + (end - start) // 2
    outage = rnd.randrange(half, max(half + 1, end - 3 * HOUR))
    delays.append(
        Delay(None, outage, outage + HOUR, outage + HOUR + ARRIVAL_SLACK, "rarenet outage")
    )
    fleet_down = rnd.randrange(start + (end - start) // 3, max(half, start + 1))
    delays.append(
        Delay(
            None, fleet_down, fleet_down + 2 * HOUR, fleet_down + 2 * HOUR + 5 * 60, "Fleet outage"
        )
    )
    return sorted(delays, key=lambda d: (d.start, d.host or ""))


def _offline(host: str, start: int, end: int, why: str) -> Delay:
    return Delay(host, start, end, end + ARRIVAL_SLACK, why)


def arrival(delays: Sequence[Delay], host: str, time: int) -> int:
    """When a line of `host` with data time `time` arrives under the plan `delays`."""
    return max(
        [time]
        + [
            d.arrives
            for d in delays
            if (d.host is None or d.host == host) and d.start <= time < d.end
        ]
    )


def write_delivery(out: Writable, delays: Iterable[Delay]) -> int:
    """Write a delivery plan as JSON Lines; returns how many delays."""
    count = 0
    for delay in delays:
        out.write(orjson.dumps(delay.to_json(), option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count


def read_delivery(path: str | Path) -> list[Delay]:
    """A delivery plan file; raises InputError naming `file:line` for a bad line."""
    return read_json_lines(
        path,
        _parse,
        "delivery line",
        hint='expected {"host": name or null, "from", "to", "arrives"} (unix seconds)',
    )


def _parse(line: bytes) -> Delay:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("a delay must be a JSON object")
    host = doc.get("host")
    if host is not None and (not isinstance(host, str) or not host):
        raise ValueError('"host" must be a host name or null (every host)')
    times = []
    for key in ("from", "to", "arrives"):
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'"{key}" must be unix seconds (a whole number), got {value!r}')
        times.append(value)
    start, end, arrives = times
    if end < start or arrives < start:
        raise ValueError(f'"to" and "arrives" must not be before "from" ({start})')
    return Delay(host, start, end, arrives, str(doc.get("why", "")))
