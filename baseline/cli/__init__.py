"""The `rarenet` command line (click).

Every subcommand takes `--db` and `--config` (also accepted before the subcommand),
and every reporting command takes `--json`. Only this package turns errors into exit
codes (README.md, "Exit codes").
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from baseline import __version__
from baseline.config import Config, load_config
from baseline.errors import EXIT_BAD_INPUT, EXIT_RUNTIME, RarenetError
from baseline.store.health import describe_failure

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """Options shared by every subcommand, resolved lazily into a Config."""

    def __init__(self) -> None:
        self.db: str | None = None
        self.config_path: str | None = None
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            overrides = {"store": {"path": self.db}} if self.db else None
            self._config = load_config(self.config_path, overrides=overrides)
        return self._config


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None:
            state = ctx.ensure_object(Context)
            setattr(state, name, value)
        return value

    return callback


def common_options(func: F) -> F:
    """`--db` and `--config`, valid on the group and on every subcommand."""
    func = click.option(
        "--db",
        metavar="PATH",
        expose_value=False,
        callback=_remember("db"),
        help="SQLite store (default: $RARENET_DB, [store] path, ./rarenet.db).",
    )(func)
    func = click.option(
        "--config",
        metavar="FILE",
        expose_value=False,
        callback=_remember("config_path"),
        help="rarenet.toml to read (default: $RARENET_CONFIG, ./rarenet.toml).",
    )(func)
    return func


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


def run_guarded(action: Callable[[], int | None]) -> None:
    """Run a command body, turning rarenet errors into a message and an exit code."""
    try:
        code = action()
    except RarenetError as exc:
        click.echo(f"rarenet: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("rarenet: interrupted; everything committed so far is kept", err=True)
        sys.exit(130)
    except sqlite3.Error as exc:
        click.echo(f"rarenet: error: {describe_failure(exc)}", err=True)
        sys.exit(EXIT_RUNTIME)
    except OSError as exc:
        click.echo(f"rarenet: error: {exc}", err=True)
        sys.exit(EXIT_RUNTIME)
    except Exception as exc:  # a defect: say so plainly, with the exit code of a failure
        click.echo(f"rarenet: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_RUNTIME)
    sys.exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.version_option(__version__, prog_name="rarenet")
@click.pass_context
def main(ctx: click.Context) -> None:
    """rarenet: find Linux processes that rarely use the network but suddenly do."""
    ctx.ensure_object(Context)


def _register() -> None:
    from baseline.cli import (
        allow_cmd,
        baseline_cmd,
        collect_cmd,
        consume_cmd,
        demo_cmd,
        detect_cmd,
        explain_cmd,
        ingest_cmd,
        packs_cmd,
        quarantine_cmd,
        report_cmd,
        serve_cmd,
        signals_cmd,
        simulate_cmd,
        status_cmd,
    )

    main.add_command(allow_cmd.allow)
    main.add_command(baseline_cmd.baseline_group)
    main.add_command(demo_cmd.demo)
    main.add_command(detect_cmd.detect)
    main.add_command(detect_cmd.backtest)
    main.add_command(explain_cmd.explain)
    main.add_command(collect_cmd.collect)
    main.add_command(consume_cmd.consume)
    main.add_command(ingest_cmd.ingest)
    main.add_command(packs_cmd.packs)
    main.add_command(quarantine_cmd.quarantine)
    main.add_command(report_cmd.report)
    main.add_command(signals_cmd.signals)
    main.add_command(serve_cmd.serve)
    main.add_command(simulate_cmd.simulate)
    main.add_command(status_cmd.status)


_register()

__all__ = ["EXIT_BAD_INPUT", "Context", "common_options", "json_option", "main", "run_guarded"]
