"""`rarenet status`: what the store holds."""

from __future__ import annotations

from typing import Any

import click
import orjson

from rarenet.baseline.cli import Context, command, common_options, json_option, open_store
from rarenet.baseline.cli.summary import plural
from rarenet.baseline.detect.maintenance import replay_of
from rarenet.baseline.units import format_age, format_time


@command()
@common_options
@json_option
@click.pass_obj
def status(state: Context, as_json: bool) -> int | None:
    """Summarise the store: observations, hosts, binaries, time range, quarantine,
    signals (how many nobody acknowledged), learning and the last detection run."""
    config = state.config()
    with open_store(config) as store:
        summary = store.summary()
        replay = replay_of(store)
    span = max(1, int(config.detect.bucket_span))
    learned, needed = summary.fleet_buckets.get(span, 0), config.detect.warmup_buckets
    if as_json:
        document = summary.__dict__ | {
            "fleet_buckets": learned,
            "learning": {"buckets": learned, "needed": needed, "done": learned >= needed},
            "replay": replay,
        }
        click.echo(orjson.dumps(document).decode())
        return 0
    data_range = (
        f"{format_time(summary.first_time)} … {format_time(summary.last_time)}"
        if summary.first_time is not None and summary.last_time is not None
        else "no data yet"
    )
    click.echo(f"store        {summary.path} (schema {summary.schema[-1]})")
    if replay is not None:
        click.echo(
            f"replay       written by {replay}: its data is pruned back from its newest data "
            "time, not from now"
        )
    click.echo(f"observations {summary.observations:,}  ({data_range})")
    click.echo(f"hosts        {summary.hosts:,}")
    click.echo(f"binaries     {summary.names:,} names, {summary.paths:,} paths")
    dropped = (
        f" (+{summary.quarantine_dropped:,} rejected but not kept: over the caps)"
        if summary.quarantine_dropped
        else ""
    )
    click.echo(f"quarantine   {summary.quarantined:,} lines{dropped}")
    click.echo(f"files read   {summary.files:,}")
    click.echo(f"signals      {summary.signals:,} ({summary.unacknowledged:,} not acknowledged)")
    if learned < needed:
        click.echo(
            f"learning     {learned}/{needed} buckets of fleet history: no signal before "
            f"{needed} (about {format_age((needed - learned) * span)} of data to go)"
        )
    else:
        click.echo(f"learning     done ({learned:,} buckets of fleet history)")
    click.echo(f"last run     {_run_line(summary.last_run)}")
    return 0


def _run_line(run: dict[str, Any] | None) -> str:
    """ "#12 at 2026-…, data time 2026-…: ok, 2 signals" (or: none yet)."""
    if run is None:
        return "none yet (`rarenet detect`, or `rarenet serve` runs it every 15 minutes)"
    when = format_time(int(run["started_at"])) if run["started_at"] is not None else "?"
    data = format_time(int(run["data_time"])) if run["data_time"] is not None else "?"
    error = f" ({run['error']})" if run["error"] else ""
    signals = plural(int(run["signals"] or 0), "signal")
    return f"#{run['id']} at {when}, data time {data}: {run['status']}{error}, {signals}"
