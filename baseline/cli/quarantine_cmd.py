"""`rarenet quarantine list|show ID|clear`: rejected input lines, where they came from
and why."""

from __future__ import annotations

import base64
import sys

import click
import orjson

from rarenet.baseline.access.audit import cli_principal
from rarenet.baseline.cli import Context, common_options, group, json_option, open_store
from rarenet.baseline.cli.inert_output import inert_line
from rarenet.baseline.cli.summary import plural
from rarenet.baseline.errors import InputError
from rarenet.baseline.ingest.quarantine import clear_quarantine
from rarenet.baseline.units import format_time


@group()
def quarantine() -> None:
    """Inspect input lines that were rejected (bad JSON, wrong types, missing keys)."""


@quarantine.command("list")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@common_options
@json_option
@click.pass_obj
def list_(state: Context, limit: int, as_json: bool) -> int | None:
    """The newest rejected lines: id, file:line, reason."""
    with open_store(state.config()) as store:
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


@quarantine.command("clear")
@click.option("--source", metavar="FILE", help="Only the lines rejected from FILE (as listed).")
@click.option("--all", "everything", is_flag=True, help="Every quarantined line.")
@common_options
@json_option
@click.pass_obj
def clear(state: Context, source: str | None, everything: bool, as_json: bool) -> int | None:
    """Delete quarantined lines — once fixed and ingested again, or not worth keeping —
    from one source (--source) or all (--all), with their overflow counts; the audit
    trail records who cleared what."""
    if bool(source) == everything:
        raise InputError("say what to clear: --source FILE or --all (not both)")
    with open_store(state.config()) as store:
        removed = clear_quarantine(store, source, cli_principal())
    if as_json:
        click.echo(orjson.dumps({"removed": removed, "source": source}).decode())
    else:
        click.echo(
            f"cleared {plural(removed, 'quarantined line')}" + (f" of {source}" if source else "")
        )
    return 0


@quarantine.command("show")
@click.argument("qid", type=int, metavar="ID")
@common_options
@json_option
@click.pass_obj
def show(state: Context, qid: int, as_json: bool) -> int | None:
    """Print the kept bytes of one rejected line (up to 64 KiB) to stdout — exactly when
    piped, with control characters escaped on a terminal; with --json one document whose
    `raw` is the bytes decoded as UTF-8 (invalid bytes replaced) and `raw_base64` the
    exact bytes."""
    with open_store(state.config()) as store:
        row = store.conn.execute(
            "SELECT source, line, reason, raw, received_at FROM quarantine WHERE id = ?", (qid,)
        ).fetchone()
    if row is None:
        raise InputError(f"no quarantined line with id {qid}", hint="see `rarenet quarantine list`")
    source, line, reason, raw, received = row
    if as_json:
        kept = bytes(raw or b"")
        document = {
            "id": qid,
            "source": source,
            "line": line,
            "reason": reason,
            "received_at": format_time(received) if received is not None else None,
            "raw": kept.decode("utf-8", "replace"),
            "raw_base64": base64.b64encode(kept).decode(),
        }
        click.echo(orjson.dumps(document).decode())
        return 0
    click.echo(inert_line(f"{source}:{line}: {reason}"), err=True)
    kept = bytes(raw or b"")
    if sys.stdout.isatty():  # on a terminal the bytes could drive it: shown inert
        click.echo(kept.decode("utf-8", "backslashreplace"))
    else:  # piped: the exact bytes, to fix and ingest again
        sys.stdout.buffer.write(kept + b"\n")
    return 0
