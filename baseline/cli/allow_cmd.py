"""`rarenet allow add|list|remove`: exceptions to the rule."""

from __future__ import annotations

import time

import click
import orjson

from rarenet.baseline.cli import Context, common_options, group, json_option, open_store
from rarenet.baseline.detect.exceptions import (
    Exception_,
    add_exception,
    list_exceptions,
    remove_exception,
)
from rarenet.baseline.errors import EXIT_FINDINGS, InputError
from rarenet.baseline.units import format_time, parse_expiry


@group()
def allow() -> None:
    """Exceptions: connections that never become signals (matches are counted)."""


@allow.command("add")
@click.option("--name", help="Process name (glob).")
@click.option("--path", "path_glob", help="Executable path (glob), e.g. '/opt/agent/*'.")
@click.option("--host", help="Host identifier (glob).")
@click.option("--user", help="User name.")
@click.option("--cidr", help="Destination network, e.g. 10.20.0.0/16.")
@click.option("--port", type=int, help="Destination port.")
@click.option(
    "--expires",
    metavar="WHEN",
    help="When it no longer applies: a duration from now (30d, 12h) or a time (unix "
    "seconds, ISO 8601).",
)
@click.option(
    "--reason",
    required=True,
    help="Why it is allowed (required: shown in `allow list` and on every match).",
)
@click.option(
    "--broad",
    is_flag=True,
    help="Confirm an exception that pins neither a binary nor a destination network "
    "(e.g. --user alone, --path '*'); it is flagged on Health.",
)
@common_options
@json_option
@click.pass_obj
def add(
    state: Context,
    name: str | None,
    path_glob: str | None,
    host: str | None,
    user: str | None,
    cidr: str | None,
    port: int | None,
    expires: str | None,
    reason: str,
    broad: bool,
    as_json: bool,
) -> int | None:
    """Add an exception; every given field must match for it to apply.

    It is checked first: what it would have hidden over the baseline history is shown,
    a broad one is refused without --broad, and it expires after at most
    [detect] exception_max_age (the default expiry too)."""

    try:
        expires_at = parse_expiry(expires, time.time()) if expires else None
    except ValueError as exc:
        raise InputError(str(exc), where="--expires") from None
    if not reason.strip():
        raise InputError("say why this is allowed (it is shown on every match)", where="--reason")
    entry = Exception_(0, name, path_glob, host, user, cidr, port, expires_at, reason)
    config = state.config()
    # Exceptions may be set up before any data arrives: this one may create the store.
    with open_store(config, create=True) as store:
        added = add_exception(
            store,
            entry,
            confirm_broad=broad,
            max_age=config.detect.exception_max_age,
            history=config.detect.history,
        )
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "id": added.id,
                    "expires_at": added.entry.expires_at,
                    "broad": added.broad is not None,
                    "preview": added.preview.as_json(),
                }
            ).decode()
        )
        return 0
    expiry = added.entry.expires_at
    until = f" until {format_time(expiry)}" if expiry is not None else ""
    click.echo(f"added exception {added.id}{until}: {added.entry.describe()}")
    click.echo(f"  {added.preview.describe()}")
    if added.broad is not None:
        click.echo(f"  broad ({added.broad}): flagged on Health", err=True)
    return 0


@allow.command("list")
@common_options
@json_option
@click.pass_obj
def list_(state: Context, as_json: bool) -> int | None:
    """Every exception with its match count."""

    with open_store(state.config()) as store:
        entries = list_exceptions(store)
    if as_json:
        click.echo(orjson.dumps(entries).decode())
        return 0
    if not entries:
        click.echo("no exceptions")
    for e in entries:
        fields = [
            f"{key}={e[key]}"
            for key in ("name", "path_glob", "host", "user", "cidr", "port")
            if e[key] is not None
        ]
        expiry = f" until {format_time(int(str(e['expires_at'])))}" if e["expires_at"] else ""
        by = f"  by {e['created_by']}" if e["created_by"] else ""
        flag = "  BROAD" if e["broad"] else ""
        click.echo(
            f"{e['id']:>4}  {' '.join(fields)}{expiry}  matched {e['matched']}{by}{flag}"
            f"  {e['reason']}"
        )
    return 0


@allow.command("remove")
@click.argument("exception_id", type=int, metavar="ID")
@common_options
@json_option
@click.pass_obj
def remove(state: Context, exception_id: int, as_json: bool) -> int | None:
    """Remove an exception (exit 1 if there was none with that id)."""

    with open_store(state.config()) as store:
        removed = remove_exception(store, exception_id)
    if as_json:
        click.echo(orjson.dumps({"id": exception_id, "removed": removed}).decode())
    else:
        click.echo(
            f"removed exception {exception_id}" if removed else f"no exception {exception_id}"
        )
    return 0 if removed else EXIT_FINDINGS
