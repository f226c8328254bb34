"""`rarenet simulate`: write a SYNTHETIC fleet result log and its labels."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import click
import orjson

from rarenet.baseline.cli import Context, command, common_options, json_option
from rarenet.baseline.cli.summary import plural
from rarenet.baseline.errors import InputError
from rarenet.baseline.simulate import (
    FORMATS,
    SimulationResult,
    SimulationSpec,
    default_labels_path,
    simulate_to_path,
    write_simulation,
)
from rarenet.baseline.simulate.spec import SCENARIOS
from rarenet.baseline.simulate.writer import Writable, open_output
from rarenet.baseline.units import format_time, parse_time

DEFAULT_START = "2026-01-05T00:00:00Z"
STDIO = "-"


def _spec(
    hosts: int, days: float, attacks: bool, seed: int, start: str, fmt: str, scenarios: str
) -> SimulationSpec:
    try:
        start_time = parse_time(start)
    except ValueError as exc:
        raise InputError(f"--start: {exc}") from None
    spec = SimulationSpec(hosts, days, attacks, seed, start_time, fmt, scenarios)
    spec.validate()
    return spec


def _labels_path(out: str, labels: str | None) -> str | None:
    if labels is not None:
        if labels == STDIO and out == STDIO:
            raise InputError("--out - and --labels - cannot both write to stdout")
        return labels
    return None if out == STDIO else str(default_labels_path(out))


def _write(
    spec: SimulationSpec, out: str, labels: str | None, arrivals: str | None = None
) -> SimulationResult:
    """Files go through simulate_to_path (atomic); stdout is written as it comes."""
    if arrivals == STDIO:
        raise InputError("--arrivals must be a file, not stdout")
    if STDIO not in (out, labels):
        return simulate_to_path(spec, out, labels, arrivals)
    stdout = sys.stdout.buffer
    with ExitStack() as stack:

        def target(name: str) -> Writable:
            return stdout if name == STDIO else open_output(stack, Path(name), name.endswith(".gz"))

        log = target(out)
        labels_file = None if labels is None else target(labels)
        arrivals_file = None if arrivals is None else target(arrivals)
        result = write_simulation(spec, log, labels_file, arrivals_file)
    stdout.flush()
    return result


def _report(
    result: SimulationResult, days: float, out: str, labels: str | None, as_json: bool
) -> None:
    to_stderr = STDIO in (out, labels)  # stdout carries data
    if as_json:
        doc = {
            "hosts": result.hosts,
            "days": days,
            "lines": result.lines,
            "rows": result.rows,
            "attacks": result.attacks,
            "out": out,
            "labels": labels,
            "start": result.start,
            "end": result.end,
        }
        click.echo(orjson.dumps(doc).decode(), err=to_stderr)
        return
    where = f"{out}" + (f", labels {labels}" if labels else "")
    click.echo(
        f"rarenet simulate: SYNTHETIC data, {plural(result.hosts, 'host')} x "
        f"{plural(days, 'day')} ({format_time(result.start)} to {format_time(result.end)}): "
        f"{plural(result.lines, 'line')}, {plural(result.rows, 'row')}, "
        f"{plural(result.attacks, 'attack')} -> {where}",
        err=to_stderr,
    )


@command(
    help=(
        "Write a SYNTHETIC osquery fleet result log, plus a labels file of the attacks in it.\n\n"
        "Nothing in the output comes from real hosts: hostnames, addresses (documentation and "
        "private ranges only) and attacks are invented, deterministically from --seed. Use it "
        "for tests, demos, benchmarks and capacity planning; feed it to `rarenet ingest`.\n\n"
        "FILE ending in .gz is gzip-compressed; `--out -` writes the log to stdout. Labels "
        "(JSON Lines, empty without --attacks) go to --labels, by default FILE with its "
        "suffix replaced by .labels.jsonl."
    ),
    short_help="Write a SYNTHETIC fleet result log (+ labels).",
)
@click.option("--hosts", type=int, required=True, help="Number of hosts (1 or more).")
@click.option("--days", type=float, required=True, help="Days of data; fractions allowed.")
@click.option("--attacks", is_flag=True, help="Inject labelled attacks (needs --days 0.375+).")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--start",
    default=DEFAULT_START,
    show_default=True,
    metavar="TIME",
    help="First data time: unix seconds or ISO 8601.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="osquery",
    show_default=True,
    help="osquery: the filesystem logger's result log; fleet: Fleet webhook bodies.",
)
@click.option(
    "--scenarios",
    type=click.Choice(SCENARIOS),
    default="classic",
    show_default=True,
    help="all: also spreading implants, tools used twice, child-holds-the-socket shells "
    "(labelled, implies --attacks), rollouts in waves, weekly jobs and re-imaged hosts "
    "(docs/quality.md); needs --days 2+.",
)
@click.option("--labels", metavar="PATH", help="Labels file (default: derived from --out).")
@click.option(
    "--arrivals",
    metavar="PATH",
    help="Also write when each line reaches rarenet (laptops offline 1-12 h, attacks whose "
    "results arrive hours late, a rarenet and a Fleet outage), for `rarenet backtest "
    "--arrivals` (docs/quality.md).",
)
@click.option("--out", required=True, metavar="FILE", help="Log to write (.gz ok, - = stdout).")
@json_option
@common_options
@click.make_pass_decorator(Context, ensure=True)
def simulate(
    state: Context,
    hosts: int,
    days: float,
    attacks: bool,
    seed: int,
    start: str,
    fmt: str,
    scenarios: str,
    labels: str | None,
    arrivals: str | None,
    out: str,
    as_json: bool,
) -> int | None:
    """Write a SYNTHETIC fleet result log and labels (see the help text)."""
    if state.db is not None:
        raise click.UsageError(
            "simulate writes files (--out, --labels) and never reads or writes a store; drop "
            "--db (to load the log into a store: `rarenet ingest --db PATH FILE`)",
            click.get_current_context(),
        )

    spec = _spec(hosts, days, attacks, seed, start, fmt, scenarios)
    labels_path = _labels_path(out, labels)
    result = _write(spec, out, labels_path, arrivals)
    _report(result, days, out, labels_path, as_json)
    return 0


__all__ = ["simulate"]
