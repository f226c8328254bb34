"""`rarenet baseline show [NAME]` and `rarenet baseline export [--host H] [--out F]`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click
import orjson

from rarenet.baseline.cli import Context, common_options, group, json_option, open_store
from rarenet.baseline.detect.snapshot import build_snapshot
from rarenet.baseline.errors import EXIT_FINDINGS


@group("baseline")
def baseline_group() -> None:
    """Inspect per-binary baselines; export the extension snapshot."""


@baseline_group.command("show")
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@common_options
@json_option
@click.pass_obj
def show(state: Context, name: str | None, limit: int, as_json: bool) -> int | None:
    """Binaries in the baseline window (NAME: only that process name or path), rarest
    first; rarity 0-100 as scores are (100: never seen). Exit 1 when NAME is unknown."""
    config = state.config()
    with open_store(config) as store:
        snapshot = build_snapshot(store, config.detect)
    entries = [e for e in snapshot["entries"] if name is None or name in (e["name"], e["path"])]
    entries.sort(key=lambda e: (-e["rarity"], e["hosts"], e["name"]))
    if name is not None and not entries:
        if as_json:
            click.echo(orjson.dumps({"fleet": snapshot["fleet"], "entries": []}).decode())
        click.echo(
            f"rarenet: no binary named {name!r} (process name or path) used the network in "
            "the baseline window",
            err=True,
        )
        return EXIT_FINDINGS
    if as_json:
        click.echo(orjson.dumps({"fleet": snapshot["fleet"], "entries": entries[:limit]}).decode())
        return 0
    fleet = snapshot["fleet"]
    state_text = (
        "mature" if fleet["mature"] else f"learning {fleet['buckets']}/{snapshot['warmup_buckets']}"
    )
    click.echo(
        f"fleet: {fleet['hosts']} hosts, {fleet['host_buckets']:,} host-buckets in "
        f"{fleet['buckets']} buckets since {fleet['since']} ({state_text})"
    )
    # Rarity on the scores' 0-100 scale here (the JSON keeps the snapshot's 0-1).
    click.echo(
        f"{'rarity':>6} {'hosts':>6} {'host-bkts':>9}  {'first seen':20} {'last seen':20} name  path"
    )
    for e in entries[:limit]:
        click.echo(
            f"{100 * e['rarity']:6.0f} {e['hosts']:6} {e['host_buckets']:9}  {e['first_seen']:20} "
            f"{e['last_seen']:20} {e['name']}  {e['path']}"
        )
    return 0


@baseline_group.command("export")
@click.option("--host", help="Add this host's own counts (the extension's host).")
@click.option("--out", "out", metavar="FILE", help="Write here (atomically) instead of stdout.")
@common_options
@click.pass_obj
def export(state: Context, host: str | None, out: str | None) -> int | None:
    """Write the versioned extension snapshot JSON (docs/snapshot.md)."""
    config = state.config()
    with open_store(config) as store:
        data = orjson.dumps(build_snapshot(store, config.detect, host), option=orjson.OPT_INDENT_2)
    if out is None:
        click.echo(data.decode())
        return 0
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data + b"\n")
    os.replace(temporary, target)
    return 0
