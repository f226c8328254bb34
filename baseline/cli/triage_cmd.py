"""`rarenet signals ack|assign|close|comment`: triage from the shell (baseline/triage.py).

Each takes one or more signal ids (or unique prefixes of 6+ characters); the person at
the shell acts as `cli:<login>` in the audit trail.
"""

from __future__ import annotations

import time

import click
import orjson

from rarenet.baseline import triage
from rarenet.baseline.access.audit import cli_principal
from rarenet.baseline.cli import Context, command, common_options, json_option, open_store
from rarenet.baseline.cli.summary import plural
from rarenet.baseline.deliver import get_signal
from rarenet.baseline.store import Store

ids_argument = click.argument("sids", nargs=-1, required=True, metavar="ID...")


def _resolve(store: Store, sids: tuple[str, ...]) -> list[str]:
    return [get_signal(store, sid).id for sid in sids]


def _report(done: triage.Changed, verb: str, as_json: bool) -> int:
    if as_json:
        unchanged = [{"id": sid, "why": why} for sid, why in done.unchanged]
        click.echo(orjson.dumps({"changed": list(done.changed), "unchanged": unchanged}).decode())
        return 0
    click.echo(f"{verb} {plural(len(done.changed), 'signal')}")
    for sid, why in done.unchanged:
        click.echo(f"  {sid[:12]}: unchanged, {why}")
    return 0


@command("ack")
@ids_argument
@common_options
@json_option
@click.pass_obj
def ack(state: Context, sids: tuple[str, ...], as_json: bool) -> int | None:
    """Acknowledge open signals: someone has looked (delivery is unaffected)."""
    with open_store(state.config()) as store:
        done = triage.acknowledge(store, _resolve(store, sids), cli_principal(), time.time())
    return _report(done, "acknowledged", as_json)


@command("assign")
@ids_argument
@click.option("--to", "assignee", required=True, metavar="USER", help="A console user.")
@common_options
@json_option
@click.pass_obj
def assign(state: Context, sids: tuple[str, ...], assignee: str, as_json: bool) -> int | None:
    """Give signals to a console user: in progress until closed."""
    with open_store(state.config()) as store:
        done = triage.assign(store, _resolve(store, sids), assignee, cli_principal(), time.time())
    return _report(done, f"assigned to {assignee}:", as_json)


@command("close")
@ids_argument
@click.option(
    "--as",
    "resolution",
    required=True,
    type=click.Choice(["true-positive", "false-positive"]),
    help="A true positive keeps the binary a suspect on its host (a return is signalled "
    "again); a false positive makes it routine there again.",
)
@click.option("--comment", metavar="TEXT", help="Say why (kept with the signal).")
@common_options
@json_option
@click.pass_obj
def close(
    state: Context, sids: tuple[str, ...], resolution: str, comment: str | None, as_json: bool
) -> int | None:
    """Close signals as a true or a false positive (a closed signal stays closed). For a
    false positive, `rarenet allow add` keeps the same thing from signalling again."""
    with open_store(state.config()) as store:
        done = triage.close(
            store,
            _resolve(store, sids),
            resolution.replace("-", "_"),
            cli_principal(),
            time.time(),
            comment,
        )
    code = _report(done, f"closed as {resolution}:", as_json)
    if resolution == "false-positive" and done.changed and not as_json:
        click.echo("  to keep it from signalling again: rarenet allow add --path … --reason …")
    return code


@command("comment")
@click.argument("sid", metavar="ID")
@click.argument("text")
@common_options
@json_option
@click.pass_obj
def comment(state: Context, sid: str, text: str, as_json: bool) -> int | None:
    """Add a comment to a signal (shown on its console page and in `signals show`)."""
    with open_store(state.config()) as store:
        found = get_signal(store, sid).id
        number = triage.comment(store, found, text, cli_principal(), time.time())
    if as_json:
        click.echo(orjson.dumps({"id": number, "signal": found}).decode())
    else:
        click.echo(f"comment {number} added to {found[:12]}")
    return 0


COMMANDS = (ack, assign, close, comment)
