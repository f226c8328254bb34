"""`rarenet report --out F.html`: the console's views as one self-contained HTML file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import orjson

from rarenet.baseline.cli import Context, command, common_options, json_option, open_store
from rarenet.baseline.cli.options import time_option
from rarenet.baseline.console.report import build_report, check_target, quality_of, write_report
from rarenet.baseline.detect.backtest import backtest
from rarenet.baseline.errors import EXIT_OK, InputError
from rarenet.baseline.simulate.labels import read_labels
from rarenet.baseline.store import Store


@command()
@click.option("--out", "out", required=True, metavar="FILE", help="Where to write the HTML page.")
@click.option("--since", metavar="TIME", help="Only signals bucketed at or after TIME.")
@click.option(
    "--backtest",
    "replay",
    multiple=True,
    metavar="FLEET.log",
    help="Replay this result log (repeatable) on a scratch store and report on that.",
)
@click.option("--labels", metavar="FILE", help="With --backtest: caught/missed per label.")
@common_options
@json_option
@click.pass_obj
def report(
    state: Context,
    out: str,
    since: str | None,
    replay: tuple[str, ...],
    labels: str | None,
    as_json: bool,
) -> int | None:
    """Write one self-contained HTML page — signals, their explanations and plots, the
    binaries involved, and with --backtest --labels the quality (caught/missed per
    label, false signals) — for sharing in a ticket. It makes no request when opened.

    Reads the store (--db) unless --backtest is given. Exit status: 0, 2 bad input.
    """
    target = Path(out)
    if labels and not replay:
        raise InputError("--labels needs --backtest FLEET.log", where="--labels")
    check_target(target)
    if not target.parent.is_dir():
        raise InputError(f"{target.parent} is not a directory", where="--out")
    config = state.config()
    start = time_option(since, "--since")
    span = max(1, int(config.detect.bucket_span))
    if replay:
        with tempfile.TemporaryDirectory(prefix="rarenet-report-") as scratch:
            replayed = Path(scratch) / "replay.db"
            result = backtest(replay, config, labels_path=labels, replay_path=replayed)
            with Store(replayed) as store:
                quality = None
                if labels and result.metrics is not None:
                    quality = quality_of(
                        store, result.metrics, read_labels(labels), span, ", ".join(replay)
                    )
                content = build_report(
                    store, config, since=start, quality=quality,
                    title=f"rarenet backtest report: {', '.join(Path(f).name for f in replay)}",
                )  # fmt: skip
    else:
        with open_store(config) as store:
            content = build_report(store, config, since=start)
    size = write_report(content, target)
    summary = {
        "out": str(target),
        "bytes": size,
        "signals": content.page.total_signals,
        "detailed": len(content.details),
        "metrics": content.quality.metrics if content.quality else None,
    }
    if as_json:
        click.echo(orjson.dumps(summary).decode())
    else:
        click.echo(
            f"wrote {target} ({size:,} bytes): {summary['signals']} signals, "
            f"{summary['detailed']} in full"
        )
    return EXIT_OK
