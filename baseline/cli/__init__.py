"""The `rarenet` command line (click).

Every subcommand takes `--db` and `--config` (also accepted before the subcommand),
and every reporting command takes `--json`. Only this package turns errors into exit
codes (README.md, "Exit codes").
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rarenet.baseline import __version__
from rarenet.baseline.cli.inert_output import InertStream, inert_line
from rarenet.baseline.config import Config, load_config
from rarenet.baseline.errors import EXIT_BAD_INPUT, EXIT_RUNTIME, InputError, RarenetError
from rarenet.baseline.store import Store
from rarenet.baseline.store.health import describe_failure

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


def open_store(config: Config, *, create: bool = False) -> Store:
    """The configured store. Only commands that fill a store (`create`: ingest, serve,
    collect, consume) may make a new one, and they say so on stderr; any other command
    refuses a path with no store, so a typo in --db is an error, not an empty answer."""
    path = str(config.store.path)
    if not create and _is_new(path):
        raise InputError(
            f"no store at {path}",
            hint="check --db / $RARENET_DB / [store] path, or create one with `rarenet ingest`",
        )
    if create:
        announce_new_store(config)
    return Store(path)


def announce_new_store(config: Config) -> None:
    """Say on stderr that the configured store does not exist yet and will be created."""
    if _is_new(str(config.store.path)):
        click.echo(f"rarenet: created a new store at {config.store.path}", err=True)


def _is_new(path: str) -> bool:
    return path != ":memory:" and not Path(path).exists()


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None:
            state = ctx.ensure_object(Context)
            setattr(state, name, value)
        return value

    return callback


def common_options(func: F) -> F:
    """`--db` and `--config`, valid on the group and on every subcommand."""
    return _with_options(func, show_db=True)


def scratch_store_options(func: F) -> F:
    """`--config`, and a `--db` left out of the help: a command on its own scratch store
    (demo, backtest) accepts it only to refuse it with a sentence saying why."""
    return _with_options(func, show_db=False)


def _with_options(func: F, show_db: bool) -> F:
    func = click.option(
        "--db",
        metavar="PATH",
        expose_value=False,
        hidden=not show_db,
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
    """Run a command, turning rarenet errors into a message and an exit code — the one
    place the CLI does so (every command is a GuardedCommand, which runs its body through
    it). click's own usage errors, `--help` and aborts pass through to click."""
    try:
        code = action()
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except RarenetError as exc:
        click.echo(inert_line(f"rarenet: error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("rarenet: interrupted; everything committed so far is kept", err=True)
        sys.exit(130)
    except sqlite3.Error as exc:
        click.echo(inert_line(f"rarenet: error: {describe_failure(exc)}"), err=True)
        sys.exit(EXIT_RUNTIME)
    except BrokenPipeError:
        _quiet_stdout()  # `rarenet signals list | head`: the reader has what it wanted
        sys.exit(0)
    except OSError as exc:
        click.echo(inert_line(f"rarenet: error: {exc}"), err=True)
        sys.exit(EXIT_RUNTIME)
    except Exception as exc:  # a defect: say so plainly, with the exit code of a failure
        click.echo(inert_line(f"rarenet: internal error: {type(exc).__name__}: {exc}"), err=True)
        sys.exit(EXIT_RUNTIME)
    sys.exit(code or 0)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class GuardedCommand(click.Command):
    """A command whose body runs under `run_guarded` however it is invoked (through
    `rarenet` or, in tests, on its own): what the body returns is the exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        run_guarded(lambda: super(GuardedCommand, self).invoke(ctx))


class GuardedGroup(click.Group):
    """A command group whose commands (and subgroups) are GuardedCommands; its own
    callback runs on into them, so it is not guarded itself."""

    command_class = GuardedCommand
    group_class = type  # subgroups are GuardedGroups too


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], GuardedCommand]:
    """`click.command` for rarenet: the body's errors become a message and an exit code."""
    return click.command(*args, cls=GuardedCommand, **kwargs)


def group(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], GuardedGroup]:
    """`click.group` for rarenet: every command in it is a GuardedCommand."""
    return click.group(*args, cls=GuardedGroup, **kwargs)


# Every command's module and object, imported when the command is first asked for, so
# `rarenet --version`, `rarenet detect …` or a serve start load only what they run.
COMMANDS: dict[str, tuple[str, str]] = {
    "allow": ("allow_cmd", "allow"),
    "audit": ("users_cmd", "audit"),
    "backtest": ("detect_cmd", "backtest"),
    "baseline": ("baseline_cmd", "baseline_group"),
    "collect": ("collect_cmd", "collect"),
    "consume": ("consume_cmd", "consume"),
    "demo": ("demo_cmd", "demo"),
    "detect": ("detect_cmd", "detect"),
    "explain": ("explain_cmd", "explain"),
    "ingest": ("ingest_cmd", "ingest"),
    "packs": ("packs_cmd", "packs"),
    "quarantine": ("quarantine_cmd", "quarantine"),
    "report": ("report_cmd", "report"),
    "serve": ("serve_cmd", "serve"),
    "signals": ("signals_cmd", "signals"),
    "simulate": ("simulate_cmd", "simulate"),
    "status": ("status_cmd", "status"),
    "tokens": ("users_cmd", "tokens"),
    "users": ("users_cmd", "users"),
}


class LazyCommands(click.Group):
    """The top-level group: it names every command in COMMANDS and imports one only
    when it runs or its help is read."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            loaded = importlib.import_module(f"rarenet.baseline.cli.{module}")
            self.add_command(getattr(loaded, attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.version_option(__version__, prog_name="rarenet")
@click.pass_context
def main(ctx: click.Context) -> None:
    """rarenet: find Linux processes that rarely use the network but suddenly do."""
    ctx.ensure_object(Context)
    if not isinstance(sys.stdout, InertStream):  # data printed can never drive a terminal
        sys.stdout = InertStream(sys.stdout)


__all__ = [
    "EXIT_BAD_INPUT",
    "Context",
    "announce_new_store",
    "command",
    "common_options",
    "group",
    "json_option",
    "main",
    "open_store",
    "run_guarded",
]
