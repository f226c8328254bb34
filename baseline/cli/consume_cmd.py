"""`rarenet consume nats://HOST:PORT --stream S`: JetStream results → the store."""

from __future__ import annotations

import asyncio
import time

import click
import orjson

from rarenet.baseline.cli import (
    Context,
    announce_new_store,
    command,
    common_options,
    json_option,
)
from rarenet.baseline.errors import EXIT_OK
from rarenet.baseline.stream.consume import (
    DEFAULT_BATCH,
    ConsumeReport,
    ConsumeSettings,
    check_settings,
    check_stream,
    run_consumer,
)
from rarenet.baseline.units import parse_duration

PROGRESS_EVERY = 10.0  # seconds between progress lines on stderr


@command()
@click.argument("servers", nargs=-1, required=True, metavar="nats://HOST:PORT...")
@click.option("--stream", required=True, help="The JetStream stream Fleet publishes into.")
@click.option("--subject", default="", help="Only these subjects (e.g. osquery.result.>).")
@click.option(
    "--durable", default="rarenet", show_default=True, help="The durable consumer's name."
)
@click.option(
    "--batch", default=DEFAULT_BATCH, show_default=True, help="Messages per fetch and commit."
)
@click.option(
    "--idle-exit",
    type=float,
    metavar="SECONDS",
    help="Stop once the consumer is drained (nothing pending or unacknowledged) and idle this long.",
)
@click.option(
    "--ack-wait",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="How long the server waits for an ack before redelivering (set when the durable is created).",
)
@click.option(
    "--connect-timeout",
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="Give up (exit 3) when no server answers within this long.",
)
@click.option(
    "--check",
    "check_subject",
    metavar="SUBJECT",
    help="Only check: the stream exists and keeps SUBJECT (where Fleet publishes, e.g. "
    "osquery.result.web-01); exit 3 when it does not.",
)
@common_options
@json_option
@click.pass_obj
def consume(
    state: Context,
    servers: tuple[str, ...],
    stream: str,
    subject: str,
    durable: str,
    batch: int,
    idle_exit: float | None,
    ack_wait: str,
    connect_timeout: str,
    check_subject: str | None,
    as_json: bool,
) -> int | None:
    """Consume osquery results from NATS JetStream (Fleet's `nats` result-log destination)
    with a durable pull consumer: each batch is committed to the store, then acked.
    Redelivered messages store nothing new; a message that is not a result is quarantined
    with its stream sequence and acked. Several servers of a cluster may be given.

    Runs until SIGTERM / Ctrl-C (the current batch is finished; while connecting, at
    once) or --idle-exit. A server that does not answer is retried quietly (a line per
    change) for --connect-timeout. Exit status: 0, 2 bad input, 3 cannot connect (or the
    stream does not exist) or write.
    """
    try:
        wait = parse_duration(ack_wait)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ack-wait") from None
    try:
        patience = parse_duration(connect_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--connect-timeout") from None
    settings = ConsumeSettings(
        servers=servers,
        stream=stream,
        subject=subject,
        durable=durable,
        batch=batch,
        idle_exit=idle_exit,
        ack_wait=wait,
        connect_timeout=patience,
    )

    if check_subject is not None:
        check_settings(settings)
        for line in asyncio.run(check_stream(settings, check_subject)):
            click.echo(line)
        return EXIT_OK
    config = state.config()
    announce_new_store(config)

    shown = [0.0]

    def progress(report: ConsumeReport) -> None:
        now = time.monotonic()
        if not as_json and now - shown[0] >= PROGRESS_EVERY:
            shown[0] = now
            click.echo(
                f"batch {report.batches}: {report.messages:,} messages, "
                f"{report.inserted:,} observations stored, {report.quarantined:,} quarantined "
                f"(sequence {report.last_sequence})",
                err=True,
            )

    report = run_consumer(settings, config, on_batch=progress)
    if as_json:
        click.echo(orjson.dumps(report.as_json()).decode())
    else:
        click.echo(
            f"{report.messages:,} messages, {report.inserted:,} observations stored, "
            f"{report.duplicates:,} duplicates, {report.quarantined:,} quarantined "
            f"in {report.seconds:.1f} s"
        )
    return EXIT_OK
