"""`rarenet quarantine list|show ID`: rejected input lines, where they came from and why."""

from __future__ import annotations

import sys

import click
import orjson

from baseline.cli import Context, common_options, json_option, run_guarded
from baseline.errors import InputError
from baseline.store import Store
from baseline.units import format_time


@click.group()
def quarantine() -> None:
    """Inspect input lines that were rejected (bad JSON, wrong types, missing keys)."""


@quarantine.command("list")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@common_options
@json_option
@click.pass_obj
def list_(state: Context, limit: int, as_json: bool) -> None:
    """The newest rejected lines: id, file:line, reason."""
    run_guarded(lambda: _list(state, limit, as_json))


def _list(state: Context, limit: int, as_json: bool) -> int:
    with Store(state.config().store.path) as store:
        rows = store.conn.execute(
            "SELECT id, received_at, source, line, reason, raw_size FROM quarantine "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
    keys = ("id", "received_at", "source", "line", "reason", "raw_size")
    if as_json:
        click.echo(orjson.dumps([dict(zip(keys, row, strict=True)) for row in rows]).decode())
        return 0
    if not rows:
        click.echo("quarantine is empty")
    for qid, received, source, line, reason, size in rows:
        click.echo(f"{qid:>6}  {format_time(received)}  {source}:{line}  ({size} bytes)  {reason}")
    return 0


@quarantine.command("show")
@click.argument("qid", type=int, metavar="ID")
@common_options
@click.pass_obj
def show(state: Context, qid: int) -> None:
    """Print the kept bytes of one rejected line (up to 64 KiB) to stdout."""
    run_guarded(lambda: _show(state, qid))


def _show(state: Context, qid: int) -> int:
    with Store(state.config().store.path) as store:
        row = store.conn.execute(
            "SELECT source, line, reason, raw FROM quarantine WHERE id = ?", (qid,)
        ).fetchone()
    if row is None:
        raise InputError(f"no quarantined line with id {qid}", hint="see `rarenet quarantine list`")
    source, line, reason, raw = row
    click.echo(f"{source}:{line}: {reason}", err=True)
    sys.stdout.buffer.write(bytes(raw or b"") + b"\n")
    return 0
