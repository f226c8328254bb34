"""`rarenet users …`, `rarenet tokens …` and `rarenet audit list`: console accounts,
personal API tokens and the audit trail (docs/operations.md#users-roles-and-credentials)."""

from __future__ import annotations

import sys

import click
import orjson

from rarenet.baseline.access.audit import cli_principal, list_audit
from rarenet.baseline.access.roles import ROLES
from rarenet.baseline.access.users import (
    add_user,
    create_token,
    list_tokens,
    list_users,
    remove_user,
    revoke_token,
    set_password,
    set_role,
)
from rarenet.baseline.cli import Context, common_options, group, json_option, open_store
from rarenet.baseline.errors import EXIT_FINDINGS, InputError
from rarenet.baseline.units import format_time, parse_duration


def _password(from_stdin: bool) -> str:
    """The new password: one line of stdin with --password-stdin, else asked twice."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise InputError("no password on standard input", where="--password-stdin")
        return line
    if not sys.stdin.isatty():
        raise InputError(
            "standard input is not a terminal", hint="pipe the password with --password-stdin"
        )
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
    return value


role_option = click.option(
    "--role", type=click.Choice(ROLES), default="viewer", show_default=True,
    help="viewer reads; analyst also acknowledges and redelivers; admin also manages "
    "exceptions, users and tokens.",
)  # fmt: skip
stdin_option = click.option(
    "--password-stdin", is_flag=True, help="Read the password from one line of stdin."
)


@group()
def users() -> None:
    """Console users: named accounts with a role (viewer, analyst, admin)."""


@users.command("add")
@click.argument("name")
@role_option
@stdin_option
@click.option(
    "--no-password", is_flag=True, help="Proxy sign-in and API tokens only (no password)."
)
@common_options
@json_option
@click.pass_obj
def users_add(
    state: Context, name: str, role: str, password_stdin: bool, no_password: bool, as_json: bool
) -> int | None:
    """Add a user (the first admin is made this way: never a default password)."""

    password = None if no_password else _password(password_stdin)
    with open_store(state.config(), create=True) as store:
        user = add_user(store, name, role, password, cli_principal())
    if as_json:
        click.echo(orjson.dumps(user.as_json()).decode())
    else:
        click.echo(f"added {user.role} {user.name}")
    return 0


@users.command("list")
@common_options
@json_option
@click.pass_obj
def users_list(state: Context, as_json: bool) -> int | None:
    """Every user with their role."""

    with open_store(state.config()) as store:
        found = list_users(store)
    if as_json:
        click.echo(orjson.dumps([u.as_json() for u in found]).decode())
        return 0
    if not found:
        click.echo("no users: add the first admin with `rarenet users add NAME --role admin`")
    for u in found:
        sign_in = "password" if u.has_password else "proxy/tokens only"
        click.echo(
            f"{u.name:<24} {u.role:<8} {sign_in:<18} added {format_time(u.created_at)} "
            f"by {u.created_by}"
        )
    return 0


@users.command("passwd")
@click.argument("name")
@stdin_option
@common_options
@click.pass_obj
def users_passwd(state: Context, name: str, password_stdin: bool) -> int | None:
    """Set a user's password."""

    password = _password(password_stdin)
    with open_store(state.config()) as store:
        set_password(store, name, password, cli_principal())
    click.echo(f"password of {name} changed")
    return 0


@users.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@common_options
@click.pass_obj
def users_role(state: Context, name: str, role: str) -> int | None:
    """Change a user's role (takes effect on their next request)."""

    with open_store(state.config()) as store:
        set_role(store, name, role, cli_principal())
    click.echo(f"{name} is now {role}")
    return 0


@users.command("remove")
@click.argument("name")
@common_options
@click.pass_obj
def users_remove(state: Context, name: str) -> int | None:
    """Remove a user and revoke their tokens (exit 1 if there was none)."""

    with open_store(state.config()) as store:
        removed = remove_user(store, name, cli_principal())
    click.echo(f"removed {name}" if removed else f"no user {name}")
    return 0 if removed else EXIT_FINDINGS


@group()
def tokens() -> None:
    """Personal API tokens: scripts act as a user, with that user's role."""


@tokens.command("add")
@click.option("--user", "user", required=True, help="Whose token it is.")
@click.option("--label", default="api", help="What it is for (shown in `tokens list`).")
@click.option("--expires", metavar="DURATION", help="Lifetime, e.g. 90d (default: none).")
@common_options
@json_option
@click.pass_obj
def tokens_add(
    state: Context, user: str, label: str, expires: str | None, as_json: bool
) -> int | None:
    """Make a token; its secret is printed once, only its hash is stored."""

    import time

    try:
        expires_at = time.time() + parse_duration(expires) if expires else None
    except ValueError as exc:
        raise InputError(str(exc), where="--expires") from None
    with open_store(state.config()) as store:
        token, secret = create_token(store, user, label, expires_at, cli_principal())
    if as_json:
        click.echo(orjson.dumps({**token.as_json(), "token": secret}).decode())
    else:
        click.echo(f"token {token.id} for {token.user} ({token.label}); shown once:")
        click.echo(secret)
    return 0


@tokens.command("list")
@common_options
@json_option
@click.pass_obj
def tokens_list(state: Context, as_json: bool) -> int | None:
    """Every token (never its secret)."""

    with open_store(state.config()) as store:
        found = list_tokens(store)
    if as_json:
        click.echo(orjson.dumps([t.as_json() for t in found]).decode())
        return 0
    if not found:
        click.echo("no tokens")
    for t in found:
        status = f"revoked {format_time(t.revoked_at)}" if t.revoked_at else "live"
        used = format_time(t.last_used_at) if t.last_used_at else "never"
        click.echo(f"{t.id:>4}  {t.user:<20} {t.label:<16} {status}  last used {used}")
    return 0


@tokens.command("revoke")
@click.argument("token_id", type=int, metavar="ID")
@common_options
@click.pass_obj
def tokens_revoke(state: Context, token_id: int) -> int | None:
    """Revoke a token (exit 1 if there was no live one with that id)."""

    with open_store(state.config()) as store:
        revoked = revoke_token(store, token_id, cli_principal())
    click.echo(f"revoked token {token_id}" if revoked else f"no live token {token_id}")
    return 0 if revoked else EXIT_FINDINGS


@group()
def audit() -> None:
    """The audit trail: who changed what, when and from where."""


@audit.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--target", help="Only entries about this, e.g. signal:ID or exception:3.")
@click.option("--action", help="Only this action, e.g. signin.failed.")
@common_options
@json_option
@click.pass_obj
def audit_list(
    state: Context, limit: int, target: str | None, action: str | None, as_json: bool
) -> int | None:
    """Newest first."""

    with open_store(state.config()) as store:
        entries = list_audit(store, limit=limit, target=target, action=action)
    if as_json:
        click.echo(orjson.dumps([e.as_json() for e in entries]).decode())
        return 0
    if not entries:
        click.echo("nothing recorded")
    for e in entries:
        click.echo(f"{format_time(e.at)}  {e.actor:<20} {e.via:<8} {e.address:<15} {e.describe()}")
    return 0
