"""`rarenet serve [--local] [--host H] [--port P]`: the HTTP API and the scheduler."""

from __future__ import annotations

from collections.abc import Callable

import click

from rarenet.baseline.cli import Context, announce_new_store, command, common_options
from rarenet.baseline.cli.detect_cmd import signal_line
from rarenet.baseline.detect.rule import RunResult


def console_sink() -> Callable[[RunResult], None]:
    """After each detection run, its new signals, one readable line each (the run's own
    line, learning progress included, is the heartbeat's)."""

    def sink(run: RunResult) -> None:
        for doc in run.documents:
            click.echo(signal_line(doc))
        if run.signals:
            click.echo(f"rarenet: {run.signals} new signal(s) queued for delivery")

    return sink


def console_line(line: str) -> None:
    """A heartbeat line (baseline.serve.heartbeat) on the console."""
    click.echo(f"rarenet: {line}")


@command()
@click.option("--local", is_flag=True, help="Also collect this host's sockets from /proc.")
@click.option("--host", metavar="ADDRESS", help="Address to bind (default [server] host).")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (default [server] port; 0 = any free)."
)
@click.option(
    "--access-log/--no-access-log", default=True, show_default=True, help="Log every request."
)
@common_options
@click.pass_obj
def serve(
    state: Context, local: bool, host: str | None, port: int | None, access_log: bool
) -> int | None:
    """Serve the HTTP API and run the schedule: tail [ingest] files, detect every
    [detect] interval, deliver, prune; with --local also collect from this host.

    POST /v1/ingest answers only after a durable commit. With no [ingest] tokens it
    refuses to listen beyond loopback (exit 2). SIGTERM / Ctrl-C finish in-flight
    requests, stop the jobs and exit 0.
    """

    from dataclasses import replace

    from rarenet.baseline.access.credentials import Credentials
    from rarenet.baseline.access.users import count_users
    from rarenet.baseline.serve.server import serve as run_server
    from rarenet.baseline.store import Store

    config = state.config()
    server = replace(
        config.server,
        host=host if host is not None else config.server.host,
        port=port if port is not None else config.server.port,
    )
    config = replace(config, server=server)
    announce_new_store(config)

    def ready(url: str) -> None:
        secrets = Credentials.from_config(config).any_secret
        auth = "tokens required" if secrets else "no tokens: loopback only"
        click.echo(f"rarenet: listening on {url} (store {config.store.path}; {auth})")
        click.echo(f"rarenet: console at {url}/ — open it in a browser")
        with Store(config.store.path) as store:
            if count_users(store) == 0:
                click.echo(
                    "rarenet: no console users yet: make the first admin with "
                    "`rarenet users add NAME --role admin`, then sign in"
                )
        if local:
            click.echo("rarenet: collecting this host's sockets from /proc (--local)")

    code = run_server(
        config,
        local=local,
        access_log=access_log,
        on_run=console_sink(),
        on_ready=ready,
        on_line=console_line,
    )
    click.echo("rarenet: stopped; every acknowledged request is committed")
    return code
