"""`rarenet signals list|show ID|redeliver ID|deliver`: the signal outbox and its deliveries
(triage: `ack|assign|close|comment`, baseline/cli/triage_cmd.py).

Webhooks are named (`[[webhooks]] name`, or host + short hash): URLs carry tokens and are
never printed.
"""

from __future__ import annotations

import time
from typing import Any

import click
import orjson

from rarenet.baseline.cli import Context, common_options, group, json_option, open_store
from rarenet.baseline.cli.summary import plural
from rarenet.baseline.cli.triage_cmd import COMMANDS as TRIAGE_COMMANDS
from rarenet.baseline.deliver import STATES, SignalRecord, deliver_once, get_signal, list_signals
from rarenet.baseline.deliver import redeliver as redeliver_signal
from rarenet.baseline.deliver.formats import printable
from rarenet.baseline.deliver.outbox import summary_state
from rarenet.baseline.deliver.webhooks import configured_webhooks
from rarenet.baseline.errors import EXIT_FINDINGS, InputError
from rarenet.baseline.triage import comments_of
from rarenet.baseline.units import format_time, parse_time


@group()
def signals() -> None:
    """The signal outbox: every signal, its delivery state per webhook, redelivery."""


for _triage in TRIAGE_COMMANDS:  # ack, assign, close, comment (baseline/cli/triage_cmd.py)
    signals.add_command(_triage)


def _deliveries_line(record: SignalRecord) -> str:
    if not record.deliveries:
        return "no webhook"
    return ", ".join(
        f"{d.webhook}:{d.state}" + (f"×{d.attempts}" if d.attempts > 1 else "")
        for d in record.deliveries
    )


def _printable_tree(value: Any) -> Any:
    """A JSON value whose strings cannot drive a terminal (control/bidi characters escaped)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): _printable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable_tree(v) for v in value]
    return value


def _context_lines(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Destination, user, command line and parent of a signal document, where known."""
    lines = []
    dest = doc.get("destination") or {}
    if dest.get("ip"):
        kind = f" ({dest['kind']})" if dest.get("kind") not in (None, "none") else ""
        lines.append(("to", f"{dest['ip']}:{dest.get('port')}{kind}"))
    user = (doc.get("user") or {}).get("name")
    if user:
        lines.append(("user", str(user)))
    process = doc.get("process") or {}
    if process.get("command_line"):
        lines.append(("cmdline", str(process["command_line"])))
    parent = process.get("parent") or {}
    if parent.get("name") or parent.get("pid"):
        pid = f" (pid {parent['pid']})" if parent.get("pid") else ""
        lines.append(("parent", f"{parent.get('name') or '?'}{pid}"))
    return lines


@signals.command("list")
@click.option(
    "--state",
    "only_state",
    type=click.Choice([*STATES, "none"]),
    help="Only signals with a delivery in this state (none: without any delivery).",
)
@click.option("--since", metavar="TIME", help="Only signals created at or after TIME.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@common_options
@json_option
@click.pass_obj
def list_(
    state: Context, only_state: str | None, since: str | None, limit: int, as_json: bool
) -> int | None:
    """Newest signals first in data time (the signal's bucket): id, data time, score,
    host, binary, triage state, delivery state per webhook."""

    try:
        start = parse_time(since) if since else None
    except ValueError as exc:
        raise InputError(str(exc), where="--since") from None
    with open_store(state.config()) as store:
        records = list_signals(store, limit=limit, since=start, state=only_state)
    if as_json:
        click.echo(orjson.dumps({"signals": [r.as_json() for r in records]}).decode())
        return 0
    if not records:
        click.echo("no signals")
        return 0
    rows = [
        (
            r.id[:12],
            format_time(r.bucket),
            f"{r.score:.0f}",
            printable(r.host),
            printable(r.path or r.name),
            printable(r.triage.label),
            f"{summary_state(r.deliveries)} ({_deliveries_line(r)})",
        )
        for r in records
    ]
    header = ("ID", "DATA TIME", "SCORE", "HOST", "BINARY", "TRIAGE", "DELIVERY")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))
    return 0


@signals.command("show")
@click.argument("sid", metavar="ID")
@common_options
@json_option
@click.pass_obj
def show(state: Context, sid: str, as_json: bool) -> int | None:
    """One signal (ID or a unique prefix of at least 6 characters): triage state and
    comments, delivery state, attempts and last error per webhook, then the full signal
    document."""

    with open_store(state.config()) as store:
        record = get_signal(store, sid)
    if as_json:
        click.echo(orjson.dumps(record.as_json()).decode())
        return 0
    click.echo(f"signal   {record.id}")
    click.echo(f"created  {format_time(record.created_at)}")
    click.echo(f"host     {printable(record.host)}")
    click.echo(f"binary   {printable(record.name)} ({printable(record.path or 'path unknown')})")
    click.echo(f"score    {record.score:.1f} (initial {record.initial_score:.1f})")
    click.echo(f"bucket   {format_time(record.bucket)} (data time)")
    for label, value in _context_lines(record.document):
        click.echo(f"{label:<8} {printable(value)}")
    click.echo(f"reason   {printable(record.document.get('reason', ''))}")
    click.echo(f"triage   {printable(record.triage.label)}")
    with open_store(state.config()) as store:
        for said in comments_of(store, record.id):
            click.echo(
                f"  {format_time(int(said.at))} {printable(said.author)}: {printable(said.text)}"
            )
    click.echo(f"delivery {summary_state(record.deliveries)}")
    for d in record.deliveries:
        when = (
            f"delivered {format_time(d.delivered_at)}"
            if d.delivered_at is not None and d.state == "delivered"
            else f"next attempt {format_time(d.next_attempt_at)}"
            if d.state in ("pending", "retrying")
            else ""
        )
        status = f"HTTP {d.last_status}" if d.last_status is not None else "-"
        click.echo(
            f"  {d.webhook}: {d.state}, {plural(d.attempts, 'attempt')}, {status}, {when}".rstrip(
                ", "
            )
        )
        if d.last_error:
            click.echo(f"    last error: {printable(d.last_error)}")
    shown = _printable_tree(record.document)
    click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    return 0


@signals.command("redeliver")
@click.argument("sid", metavar="ID")
@click.option("--webhook", metavar="NAME", help="Only this webhook (default: every one).")
@common_options
@json_option
@click.pass_obj
def redeliver(state: Context, sid: str, webhook: str | None, as_json: bool) -> int | None:
    """Queue a signal again (state pending, same Idempotency-Key); `rarenet serve` or
    `rarenet signals deliver` sends it."""

    config = state.config()
    names = [w.name for w in configured_webhooks(config)]
    with open_store(config) as store:
        record = get_signal(store, sid)
        queued = redeliver_signal(store, record.id, names, now=time.time(), only=webhook)
    if as_json:
        click.echo(orjson.dumps({"id": record.id, "webhooks": queued}).decode())
    else:
        click.echo(f"queued {record.id} for {', '.join(queued)}")
    return 0


@signals.command("deliver")
@common_options
@json_option
@click.pass_obj
def deliver(state: Context, as_json: bool) -> int | None:
    """One delivery pass now (what `rarenet serve` does every few seconds).

    Exit status: 0 nothing failed in this pass, 1 some delivery is retrying, failed or
    was dead-lettered (see `rarenet signals list --state …`)."""

    config = state.config()
    with open_store(config) as store:
        report = deliver_once(store, config)
    if as_json:
        click.echo(orjson.dumps(report.as_json()).decode())
    else:
        click.echo(
            f"{report.attempted} attempted: {report.delivered} delivered, "
            f"{report.retrying} retrying, {report.failed} failed; {report.dead} dead-lettered"
        )
    return EXIT_FINDINGS if report.retrying or report.failed or report.dead else 0
