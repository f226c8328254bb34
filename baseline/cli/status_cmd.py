"""`rarenet status`: what the store holds."""

from __future__ import annotations

import click
import orjson

from rarenet.baseline.cli import Context, common_options, json_option, open_store
from rarenet.baseline.units import format_time


@click.command()
@common_options
@json_option
@click.pass_obj
def status(state: Context, as_json: bool) -> int | None:
    """Summarise the store: observations, hosts, binaries, time range, quarantine."""
    return _status(state, as_json)


def _status(state: Context, as_json: bool) -> int:
    with open_store(state.config()) as store:
        summary = store.summary()
    if as_json:
        click.echo(orjson.dumps(summary.__dict__).decode())
        return 0
    span = (
        f"{format_time(summary.first_time)} … {format_time(summary.last_time)}"
        if summary.first_time is not None and summary.last_time is not None
        else "no data yet"
    )
    click.echo(f"store        {summary.path} (schema {summary.schema[-1]})")
    click.echo(f"observations {summary.observations:,}  ({span})")
    click.echo(f"hosts        {summary.hosts:,}")
    click.echo(f"binaries     {summary.names:,} names, {summary.paths:,} paths")
    dropped = (
        f" (+{summary.quarantine_dropped:,} rejected but not kept: over the caps)"
        if summary.quarantine_dropped
        else ""
    )
    click.echo(f"quarantine   {summary.quarantined:,} lines{dropped}")
    click.echo(f"files read   {summary.files:,}")
    return 0
