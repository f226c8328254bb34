"""Run a simulation: all hosts' timelines, merged by time chunk, streamed to a writer.

Memory stays bounded: rows are generated for one time chunk of the whole fleet at a
time (at most an hour, and about 20k rows for big fleets), sorted, handed to a writer
thread, and forgotten. Small chunks also keep the working set in the CPU caches.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from itertools import groupby, islice
from operator import itemgetter
from pathlib import Path

from rarenet.baseline.errors import InputError
from rarenet.baseline.simulate.attacks import AttackPlan, plan_attacks
from rarenet.baseline.simulate.delivery import plan_delivery, write_delivery
from rarenet.baseline.simulate.families import Scenarios, plan_scenarios
from rarenet.baseline.simulate.fleet import Fleet, ToolInstall, build_fleet
from rarenet.baseline.simulate.labels import write_labels
from rarenet.baseline.simulate.peers import FleetPeers
from rarenet.baseline.simulate.render import FleetSink, OsquerySink, ResultBuilder
from rarenet.baseline.simulate.sockets import SharedCache
from rarenet.baseline.simulate.spec import SimulationResult, SimulationSpec
from rarenet.baseline.simulate.timeline import Event, HostSim
from rarenet.baseline.simulate.writer import BackgroundWriter, Writable, open_output

CHUNK_ROWS = 20_000
ROWS_PER_HOST_DAY = 400  # a generous estimate, to size chunks
MAX_CHUNK = 3600
_TIME_HOST = itemgetter(0, 1)
_TIME = itemgetter(0)


def chunk_seconds(hosts: int) -> int:
    """Data time per chunk: a whole number of minutes, at most an hour."""
    seconds = CHUNK_ROWS * 86400 // (ROWS_PER_HOST_DAY * hosts)
    return max(60, min(MAX_CHUNK, seconds // 60 * 60))


def _bounds(start: int, end: int, step: int) -> Iterator[int]:
    until = start + step
    while until < end:
        yield until
        until += step
    yield end


def _drain(events: list[Event], cut: int, sink: OsquerySink) -> None:
    for (unix, index), group in groupby(islice(events, cut), key=_TIME_HOST):
        sink.poll(index, unix, [event[3] for event in group])


def _simulators(
    fleet: Fleet, seed: int, plans: list[AttackPlan], scenarios: Scenarios
) -> list[HostSim]:
    peers = FleetPeers(fleet.addresses())
    shared = SharedCache()
    installs: dict[int, list[ToolInstall]] = defaultdict(list)
    for install in fleet.installs:
        installs[install.host].append(install)
    attacks: dict[int, list[AttackPlan]] = defaultdict(list)
    for plan in plans:
        attacks[plan.host].append(plan)
    return [
        HostSim(
            host,
            min(fleet.end, host.leave),
            seed,
            peers,
            shared,
            installs[host.index],
            attacks[host.index],
            scenarios.extras.get(host.index, ()),
        )
        for host in fleet.hosts
    ]


def _generate(
    spec: SimulationSpec,
    fleet: Fleet,
    plans: list[AttackPlan],
    scenarios: Scenarios,
    out: Writable,
) -> tuple[int, int]:
    """Write all rows of the run to `out`; returns (lines, rows)."""
    sims = _simulators(fleet, spec.seed, plans, scenarios)
    builder = ResultBuilder(fleet.hosts)
    sink = FleetSink(out, builder) if spec.format == "fleet" else OsquerySink(out, builder)
    rows, carry = 0, list[Event]()
    for until in _bounds(spec.start, spec.end, chunk_seconds(spec.hosts)):
        events = carry
        for sim in sims:
            sim.run(until, events)
        events.sort()
        cut = bisect_left(events, until, key=_TIME)
        _drain(events, cut, sink)
        sink.flush()
        rows += cut
        carry = events[cut:]
    sink.close()
    return sink.lines, rows


def write_simulation(
    spec: SimulationSpec,
    out: Writable,
    labels: Writable | None,
    arrivals: Writable | None = None,
) -> SimulationResult:
    """Write the synthetic result log to `out` and, if given, its labels to `labels` and
    its delivery plan (when each line arrives, baseline/simulate/delivery.py) to
    `arrivals`.

    One result object (or Fleet body) per line, in data-time order. Raises InputError
    for a bad spec.
    """
    spec.validate()
    fleet = build_fleet(spec)
    every = spec.scenarios == "all"
    plans = plan_attacks(fleet, spec.seed) if spec.attacks or every else []
    scenarios = plan_scenarios(fleet, spec.seed, plans) if every else Scenarios()
    plans = sorted([*plans, *scenarios.plans], key=lambda plan: plan.start)
    writer = BackgroundWriter(out)
    try:
        lines, rows = _generate(spec, fleet, plans, scenarios, writer)
    finally:
        writer.close()
    if labels is not None:
        write_labels(labels, (plan.label for plan in plans))
    if arrivals is not None:
        hosts = [(host.name, host.role) for host in fleet.hosts]
        attacks = [plan.label for plan in plans]
        write_delivery(arrivals, plan_delivery(hosts, spec.start, spec.end, attacks, spec.seed))
    return SimulationResult(lines, rows, spec.hosts, len(plans), spec.start, spec.end)


def default_labels_path(out: str | Path) -> Path:
    """`fleet.log` → `fleet.labels.jsonl`; `fleet.log.gz` → `fleet.labels.jsonl`."""
    path = Path(out)
    if path.suffix == ".gz":
        path = path.with_suffix("")
    return path.with_name(f"{path.stem}.labels.jsonl")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def simulate_to_path(
    spec: SimulationSpec,
    out_path: str | Path,
    labels_path: str | Path | None,
    arrivals_path: str | Path | None = None,
) -> SimulationResult:
    """Write the log to `out_path` (gzip if it ends in .gz), labels to `labels_path` and
    the delivery plan to `arrivals_path`.

    No labels (arrivals) file without its path. Files appear complete or not at all:
    each is written under a temporary name, then renamed.
    """
    spec.validate()
    final = [Path(out_path)] + ([Path(labels_path)] if labels_path is not None else [])
    final += [Path(arrivals_path)] if arrivals_path is not None else []
    for path in final:
        if path.is_dir():
            raise InputError(f"{path} is a directory", hint="give a file name")
    temps = [_temporary(path) for path in final]
    try:
        with ExitStack() as stack:
            files = [
                open_output(stack, temp, path.suffix == ".gz")
                for temp, path in zip(temps, final, strict=True)
            ]
            labels_file = files[1] if labels_path is not None else None
            arrivals_file = files[-1] if arrivals_path is not None else None
            result = write_simulation(spec, files[0], labels_file, arrivals_file)
        for temp, path in zip(temps, final, strict=True):
            os.replace(temp, path)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return result
