"""`rarenet collect [--once] [--interval S] [--count N]`."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import click
import orjson

from rarenet.baseline.cli import Context, command, common_options, json_option, open_store
from rarenet.baseline.collect import Collector, local_host_id, local_host_uuid
from rarenet.baseline.errors import ConfigError
from rarenet.baseline.ingest.chunks import build_parser
from rarenet.baseline.units import parse_duration


@command()
@click.option("--once", is_flag=True, help="Scan once and exit.")
@click.option(
    "--interval", metavar="DURATION", help="Time between scans (default [collect] interval, 60s)."
)
@click.option("--count", type=click.IntRange(1), help="Stop after this many scans.")
@common_options
@json_option
@click.pass_obj
def collect(
    state: Context, once: bool, interval: str | None, count: int | None, as_json: bool
) -> int | None:
    """Read this host's sockets from /proc (the rows of the pack query) into the store.

    Rows are stored as observations of this host (`[collect] host_id`, default the
    hostname; /etc/machine-id is its host.id). Like the pack's differential logging, only
    sockets that are new since the previous scan are stored. Runs until Ctrl-C / SIGTERM unless --once or
    --count is given; each scan commits before the next starts.
    """
    config = state.config()
    try:
        every = parse_duration(interval) if interval else config.collect.interval
    except ValueError as exc:
        raise ConfigError(str(exc), where="--interval") from None
    if every < 1:
        raise ConfigError("must be at least 1s", where="--interval")
    scans = 1 if once else count
    stop = threading.Event()
    previous = {sig: signal.signal(sig, _stopper(stop)) for sig in (signal.SIGTERM, signal.SIGINT)}
    host = local_host_id(config.collect.host_id)
    totals = {"scans": 0, "sockets": 0, "observations": 0}
    try:
        with open_store(config, create=True) as store:
            collector = Collector(
                store, build_parser(config).normaliser, host, host_uuid=local_host_uuid()
            )
            while not stop.is_set():
                started = time.monotonic()
                sockets, stored = collector.collect_once()
                totals["scans"] += 1
                totals["sockets"] += sockets
                totals["observations"] += stored
                if not as_json:
                    click.echo(f"{host}: {sockets} sockets, {stored} new observations")
                if scans is not None and totals["scans"] >= scans:
                    break
                stop.wait(max(0.0, every - (time.monotonic() - started)))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if as_json:
        click.echo(orjson.dumps({"host": host, **totals}).decode())
    return 0


def _stopper(stop: threading.Event) -> Callable[[int, FrameType | None], None]:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    return handler
