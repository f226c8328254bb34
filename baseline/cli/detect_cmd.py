"""`rarenet detect`, `rarenet backtest`: the rule, live or replayed."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import click
import orjson

from rarenet.baseline.cli import (
    Context,
    command,
    common_options,
    json_option,
    open_store,
    scratch_store_options,
)
from rarenet.baseline.cli.options import input_size, shards_option, time_option
from rarenet.baseline.cli.summary import echo_summary, plural
from rarenet.baseline.config import override
from rarenet.baseline.detect.backtest import backtest as run_backtest
from rarenet.baseline.detect.rule import RunResult
from rarenet.baseline.detect.shards import detect_configured
from rarenet.baseline.errors import EXIT_FINDINGS, EXIT_OK, ConfigError
from rarenet.baseline.units import format_age, format_time

MAX_CATCH_UP_RUNS = 200  # runs one `rarenet detect` makes to empty the late-data queue

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar


def signal_line(doc: dict[str, Any]) -> str:
    """One line per signal: score, host, binary, destination, why."""
    dest = doc.get("destination") or {}
    kind = f" ({dest['kind']})" if dest.get("kind") not in (None, "none") else ""
    where = f" → {dest.get('ip')}:{dest.get('port')}{kind}" if dest.get("ip") else ""
    user = (doc.get("user") or {}).get("name")
    who = f" as {user}" if user else ""
    return (
        f"  [{doc['score']:5.1f}] {doc['host']['name']}: {doc['process']['name']} "
        f"({doc['process']['executable'] or 'path unknown'}){who}{where} — {doc['reason']}"
    )


def run_line(run: RunResult) -> str:
    text = (
        f"run at {format_time(run.data_time)} (window {format_time(run.window_start)} … "
        f"{format_time(run.window_end)}): {plural(run.candidates, 'candidate')}, "
        f"{plural(run.all_signals, 'signal')}"
    )
    total = run.shards + len(run.shards_down)  # `shards` counts the shards scored
    extras = [
        f"{run.shards} of {plural(total, 'shard')} scored" if run.shards_down else "",
        f"over {run.shards} shards" if run.shards > 1 and not run.shards_down else "",
        f"{run.suppressed} suppressed" if run.suppressed else "",
        f"{run.excepted} excepted" if run.excepted else "",
        f"{run.truncated} over max_signals" if run.truncated else "",
        run.learning,
        run.late_summary(),
    ]
    extra = ", ".join(part for part in extras if part)
    return text + (f" ({extra})" if extra else "")


@command()
@click.option("--at", "at", metavar="TIME", help="Data time of the run (default: now).")
@shards_option(". Its token comes from [detect] shard_token or $RARENET_DETECT_SHARD_TOKEN.")
@common_options
@json_option
@click.pass_obj
def detect(state: Context, at: str | None, shards: tuple[str, ...], as_json: bool) -> int | None:
    """One run of the rule at data time TIME over the look-back; queue and print signals.

    Late data (older than the look-back, within history: an offline host's buffered
    results, a backfill) is scored first, oldest first; when it is more than one run
    takes ([detect] catch_up), runs follow until none waits.

    With shards, one fleet-wide run over them: signals and the run record go to this
    node's store (--db), a shard that does not answer is named and its hosts not scored.

    Exit status: 0 no new signal, 1 new signals were queued, 2 bad input or config,
    3 the store failed.
    """
    config = override(state.config(), "detect", {"shards": list(shards) or None})
    if config.detect.role == "shard":
        raise ConfigError(
            'this store is a shard ([detect] role = "shard"): its fleet numbers cover only '
            "its own hosts, so the rule does not run on it",
            where=config.source or "[detect] role",
            hint="run `rarenet detect --shard URL …` on the detection node",
        )
    sharded = bool(config.detect.shards)
    with open_store(config, create=sharded) as store:
        runs = [detect_configured(store, config.detect, time_option(at, "--at"))]
        # late data beyond one run's catch-up budget: go on until nothing waits
        while runs[-1].behind and len(runs) < MAX_CATCH_UP_RUNS:
            click.echo(run_line(runs[-1]), err=True)
            runs.append(detect_configured(store, config.detect, time_option(at, "--at")))
        run = runs[-1]
        # the "data ends at" hint reads this store's observations; over shards it has none
        newest = None
        if not sharded:
            newest = store.conn.execute("SELECT max(time) FROM observations").fetchone()[0]
    for down in run.shards_down:
        click.echo(f"rarenet: shard down, its hosts not scored in this run: {down}", err=True)
    if run.too_late:
        click.echo(
            f"rarenet: {plural(run.too_late, 'host-bucket')} of data arrived older than "
            "[detect] history before this run and will not be scored: run `rarenet backtest "
            "FILE…` to replay old logs",
            err=True,
        )
    if at is None and newest is not None and run.candidates == 0:
        ended = int(time.time()) - int(newest)
        if ended > config.detect.lookback:
            click.echo(
                f"rarenet: the data ends at {format_time(int(newest))} ({format_age(ended)} ago), "
                "before this run's window: run `rarenet detect --at "
                f"{format_time(int(newest))}`, or `rarenet backtest FILE…` to replay old logs",
                err=True,
            )
    documents = [doc for earlier in runs[:-1] for doc in earlier.documents] + run.documents
    if as_json:
        click.echo(orjson.dumps(run.as_json() | {"signals": documents}).decode())
    else:
        click.echo(run_line(run))
        for doc in documents:
            click.echo(signal_line(doc))
    return EXIT_FINDINGS if documents else EXIT_OK


@command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--from", "start", metavar="TIME", help="First data time to score.")
@click.option("--to", "end", metavar="TIME", help="Last data time to score.")
@click.option("--labels", metavar="FILE", help="JSON Lines of labelled malicious activity.")
@click.option(
    "--arrivals",
    metavar="FILE",
    help="When the lines arrived (JSON Lines of delays, as `rarenet simulate --arrivals` "
    "writes): replay in arrival order, as the live service would have seen them.",
)
@scratch_store_options
@json_option
@click.pass_obj
def backtest(
    state: Context,
    files: tuple[str, ...],
    start: str | None,
    end: str | None,
    labels: str | None,
    arrivals: str | None,
    as_json: bool,
) -> int | None:
    """Replay result logs in data time (or, with --arrivals, in arrival order) through
    ingest and the scheduled rule.

    Uses a fresh temporary store (so it refuses --db) and never delivers. Prints every
    signal, tagged with the labelled attack it matches; with --labels also recall (every
    missed label by name), precision and false signals per 100 host-days (after warm-up).
    A progress bar goes to stderr on a terminal.
    """
    if state.db is not None:
        raise click.UsageError(
            "backtest replays the logs into its own fresh scratch store and never reads or "
            "writes --db; drop --db (to fill a store: `rarenet ingest --db PATH FILE...`)",
            click.get_current_context(),
        )
    config = state.config()
    with _Progress(sum(input_size(name) for name in files), enabled=not as_json) as progress:
        result = run_backtest(
            files,
            config,
            start=time_option(start, "--from"),
            end=time_option(end, "--to"),
            labels_path=labels,
            arrivals_path=arrivals,
            on_ingest=progress.ingested,
            on_start=progress.replaying,
            on_run=progress.ran,
        )
    if as_json:
        click.echo(orjson.dumps(result.as_json()).decode())
    else:
        echo_summary(result)
    return EXIT_OK


class _Progress:
    """Bars on stderr while a backtest runs, only on a terminal: bytes ingested, then
    runs replayed."""

    def __init__(self, total_bytes: int, *, enabled: bool) -> None:
        self._bytes = total_bytes
        self._enabled = enabled and sys.stderr.isatty()
        self._stack = ExitStack()
        self._bar: ProgressBar[int] | None = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stack.close()

    def _open(self, label: str, length: int) -> None:
        self._stack.close()
        self._bar = self._stack.enter_context(
            click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)
        )

    def ingested(self, count: int) -> None:
        if self._enabled and self._bar is None and self._bytes:
            self._open("ingesting", self._bytes)
        if self._bar is not None:
            self._bar.update(count)

    def replaying(self, runs: int) -> None:
        if self._enabled and runs:
            self._open("replaying runs", runs)

    def ran(self, _run: RunResult) -> None:
        if self._bar is not None:
            self._bar.update(1)
