"""`rarenet packs build [--check]`: regenerate packs/ from queries/."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from rarenet.baseline.cli import common_options, group, json_option
from rarenet.baseline.errors import EXIT_FINDINGS, EXIT_OK, InputError
from rarenet.baseline.packs import BuildReport, build
from rarenet.baseline.packs.paths import resolve_dirs


@group()
@common_options
def packs() -> None:
    """Query packs for osquery, Fleet and Kolide, generated from queries/."""


@packs.command(name="build")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any pack is out of date.")
@click.option(
    "--queries",
    "queries_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    show_default="the project's queries/",
    help="Directory of *.sql queries (one statement per file).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    show_default="the project's packs/",
    help="Directory the packs are written to.",
)
@click.option(
    "--without",
    metavar="QUERY",
    multiple=True,
    help="Leave out an optional query (repeat for each), e.g. socket_events for hosts "
    "without osquery's audit events; needs --out (the project's packs/ hold every query).",
)
@common_options
@json_option
def build_command(
    check: bool,
    queries_dir: Path | None,
    out_dir: Path | None,
    without: tuple[str, ...],
    as_json: bool,
) -> int | None:
    """Regenerate the packs (osquery JSON, Fleet GitOps, fleetctl, Kolide) from queries/.

    By default the project's own queries/ and packs/ (a checkout's top-level folders, or
    the copies an installed rarenet ships), from any current directory; paths given with
    --queries / --out are relative to the current directory. With --check nothing is
    written and the exit status is 1 when a generated file is out of date, missing or
    left over (0 when all are current). Exit 2: a query file is invalid (the error names
    it), a default directory is missing, or a build without --out would rewrite an
    installed copy's packs (the error names the option).
    """
    return _build(check, queries_dir, out_dir, without, as_json)


def _build(
    check: bool, queries: Path | None, out: Path | None, without: tuple[str, ...], as_json: bool
) -> int:
    if without and out is None:
        raise InputError(
            "a pack without some queries needs its own directory",
            where="--without",
            hint="add --out DIR (the project's packs/ hold every query)",
        )
    dirs = resolve_dirs(queries, out, check=check)
    out_dir = dirs.out
    report = build(dirs.queries, out_dir, check=check, without=without)
    failed = check and bool(report.stale)
    if as_json:
        document = {
            "written": _paths(out_dir, report.written),
            "unchanged": _paths(out_dir, report.unchanged),
            "stale": _paths(out_dir, report.stale),
        }
        click.echo(orjson.dumps(document).decode())
    else:
        _print(report, out_dir, check)
    return EXIT_FINDINGS if failed else EXIT_OK


def _paths(out_dir: Path, rels: list[str]) -> list[str]:
    return [str(out_dir / rel) for rel in rels]


def _print(report: BuildReport, out_dir: Path, check: bool) -> None:
    for rel in report.written:
        click.echo(f"wrote      {out_dir / rel}")
    for rel in report.stale:
        if check:
            click.echo(f"{report.problems[rel]}: {out_dir / rel}", err=True)
        else:
            click.echo(f"removed    {out_dir / rel} (no longer generated)")
    if check and report.stale:
        click.echo(
            f"rarenet: {len(report.stale)} pack file(s) not current; run `rarenet packs build`",
            err=True,
        )
    elif check:
        click.echo(f"packs are current ({len(report.unchanged)} files in {out_dir})")
    else:
        click.echo(f"{len(report.written)} written, {len(report.unchanged)} unchanged in {out_dir}")
