"""`rarenet detect`, `rarenet backtest`: the rule, live or replayed."""

from __future__ import annotations

import time
from typing import Any

import click
import orjson

from baseline.cli import Context, common_options, json_option, open_store, run_guarded
from baseline.detect.backtest import backtest as run_backtest
from baseline.detect.rule import RunResult, detect_once
from baseline.errors import EXIT_FINDINGS, EXIT_OK, InputError
from baseline.units import format_age, format_time, parse_time


def _time(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise InputError(str(exc), where=option) from None


def signal_line(doc: dict[str, Any]) -> str:
    """One line per signal: score, host, binary, destination, why."""
    dest = doc.get("destination") or {}
    where = f" → {dest.get('ip')}:{dest.get('port')}" if dest.get("ip") else ""
    user = (doc.get("user") or {}).get("name")
    who = f" as {user}" if user else ""
    return (
        f"  [{doc['score']:5.1f}] {doc['host']['name']}: {doc['process']['name']} "
        f"({doc['process']['executable'] or 'path unknown'}){who}{where} — {doc['reason']}"
    )


def run_line(run: RunResult) -> str:
    text = (
        f"run at {format_time(run.data_time)} (window {format_time(run.window_start)} … "
        f"{format_time(run.window_end)}): {run.candidates} candidates, {run.signals} signals"
    )
    extras = [
        f"{run.suppressed} suppressed" if run.suppressed else "",
        f"{run.excepted} excepted" if run.excepted else "",
        f"{run.truncated} over max_signals" if run.truncated else "",
        run.learning,
    ]
    extra = ", ".join(part for part in extras if part)
    return text + (f" ({extra})" if extra else "")


@click.command()
@click.option("--at", "at", metavar="TIME", help="Data time of the run (default: now).")
@common_options
@json_option
@click.pass_obj
def detect(state: Context, at: str | None, as_json: bool) -> None:
    """One run of the rule at data time TIME over the look-back; queue and print signals.

    Exit status: 0 no new signal, 1 new signals were queued, 2 bad input or config,
    3 the store failed.
    """
    run_guarded(lambda: _detect(state, at, as_json))


def _detect(state: Context, at: str | None, as_json: bool) -> int:
    config = state.config()
    with open_store(config) as store:
        run = detect_once(store, config.detect, _time(at, "--at"))
        newest = store.conn.execute("SELECT max(time) FROM observations").fetchone()[0]
    if at is None and newest is not None and run.candidates == 0:
        ended = int(time.time()) - int(newest)
        if ended > config.detect.lookback:
            click.echo(
                f"rarenet: the data ends at {format_time(int(newest))} ({format_age(ended)} ago), "
                "before this run's window: run `rarenet detect --at "
                f"{format_time(int(newest))}`, or `rarenet backtest FILE…` to replay old logs",
                err=True,
            )
    if as_json:
        click.echo(orjson.dumps(run.as_json()).decode())
    else:
        click.echo(run_line(run))
        for doc in run.documents:
            click.echo(signal_line(doc))
    return EXIT_FINDINGS if run.signals else EXIT_OK


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--from", "start", metavar="TIME", help="First data time to score.")
@click.option("--to", "end", metavar="TIME", help="Last data time to score.")
@click.option("--labels", metavar="FILE", help="JSON Lines of labelled malicious activity.")
@common_options
@json_option
@click.pass_obj
def backtest(
    state: Context,
    files: tuple[str, ...],
    start: str | None,
    end: str | None,
    labels: str | None,
    as_json: bool,
) -> None:
    """Replay result logs in data time through ingest and the scheduled rule.

    Uses a fresh temporary store (never --db) and never delivers. Prints every signal
    of every run; with --labels also recall, precision and false signals per 100
    host-days (after warm-up).
    """
    run_guarded(lambda: _backtest(state, files, start, end, labels, as_json))


def _backtest(
    state: Context,
    files: tuple[str, ...],
    start: str | None,
    end: str | None,
    labels: str | None,
    as_json: bool,
) -> int:
    config = state.config()

    def show(run: RunResult) -> None:
        if run.signals:
            click.echo(run_line(run))
            for doc in run.documents:
                click.echo(signal_line(doc))

    result = run_backtest(
        files,
        config,
        start=_time(start, "--from"),
        end=_time(end, "--to"),
        labels_path=labels,
        on_run=None if as_json else show,
    )
    if as_json:
        click.echo(orjson.dumps(result.as_json()).decode())
        return EXIT_OK
    click.echo(f"{len(result.runs)} runs, {len(result.signals)} signals")
    if result.metrics:
        click.echo(" ".join(f"{key}={value}" for key, value in result.metrics.items()))
    return EXIT_OK
