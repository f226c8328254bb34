"""`rarenet ingest FILE... | -`."""

from __future__ import annotations

import os
import sys

import click
import orjson

from rarenet.baseline.cli import Context, command, common_options, json_option, open_store
from rarenet.baseline.cli.options import input_size
from rarenet.baseline.errors import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, InputError
from rarenet.baseline.ingest.pipeline import Ingester, IngestReport
from rarenet.baseline.ingest.workers import default_workers


@command()
@click.argument("files", nargs=-1, required=True, metavar="FILE... | -")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes that parse and commit large inputs (default: CPUs, at most 4).",
)
@common_options
@json_option
@click.pass_obj
def ingest(
    state: Context, files: tuple[str, ...], workers: int | None, as_json: bool
) -> int | None:
    """Ingest osquery / Fleet result logs (any mix of formats, gzip ok).

    Idempotent: lines already stored are counted as duplicates, files resume from
    their checkpoint, rotated files are followed. Bad lines go to quarantine with
    file:line and the reason; the good lines around them are kept.

    Exit status: 0 all lines accepted, 1 some lines quarantined, 2 an input could not
    be read (or bad config), 3 the store failed.
    """
    workers = workers or default_workers()
    config = state.config()
    missing = [name for name in files if name != "-" and not os.path.exists(name)]
    if len(missing) == len(files):  # nothing to read: no store is created for it
        raise InputError("no such file", where=missing[0])
    total = sum(input_size(name) for name in files)
    show_progress = sys.stderr.isatty() and not as_json and total > 0
    with open_store(config, create=True) as store:
        if show_progress:
            with click.progressbar(
                length=total, label="ingesting", file=sys.stderr, show_pos=False
            ) as bar:
                report = Ingester(store, config, workers=workers, progress=bar.update).ingest(files)
        else:
            report = Ingester(store, config, workers=workers).ingest(files)
    if as_json:
        click.echo(orjson.dumps(report.as_json()).decode())
    else:
        for error in report.errors:
            click.echo(f"rarenet: error: {error}", err=True)
        click.echo(summary_line(report), err=False)
        if report.rejected:
            click.echo(
                f"{report.rejected} line(s) rejected and quarantined (at most 1000 kept per "
                "chunk, 10,000 per source): see `rarenet quarantine list`",
                err=True,
            )
    if report.errors:
        return EXIT_BAD_INPUT
    return EXIT_FINDINGS if report.rejected else EXIT_OK


def summary_line(report: IngestReport) -> str:
    """`read 1,000 lines: 950 observations stored, 0 duplicates, 2 rejected, …`."""
    text = (
        f"read {report.lines:,} lines: {report.observations:,} observations stored, "
        f"{report.duplicates:,} duplicates, {report.rejected:,} rejected, "
        f"{report.filtered:,} filtered, {report.skipped:,} other rows skipped "
        f"in {report.seconds:.2f}s ({report.rows_per_second:,.0f} rows/s)"
    )
    if report.files and not report.lines and not report.errors:
        text += " — nothing new since the last checkpoint"
    if report.pending_bytes:
        text += f"; {report.pending_bytes:,} bytes of an unfinished last line wait for more"
    return text
