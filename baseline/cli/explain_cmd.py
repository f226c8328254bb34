"""`rarenet explain HOST EXECUTABLE`: why a host's use of a binary did or did not fire."""

from __future__ import annotations

import time

import click
import orjson

from rarenet.baseline.cli import Context, command, common_options, json_option, open_store
from rarenet.baseline.cli.options import shards_option, time_option
from rarenet.baseline.config import override
from rarenet.baseline.detect.shards import configured_shards
from rarenet.baseline.detect.why import Why, why
from rarenet.baseline.errors import EXIT_OK, InputError
from rarenet.baseline.units import format_time


@command()
@click.argument("host")
@click.argument("executable")
@click.option("--at", "at", metavar="TIME", help="Data time of the run to explain (default: now).")
@shards_option(": explain over the shards, as the detection node's rule scores.")
@common_options
@json_option
@click.pass_obj
def explain(
    state: Context,
    host: str,
    executable: str,
    at: str | None,
    shards: tuple[str, ...],
    as_json: bool,
) -> int | None:
    """Why HOST's use of EXECUTABLE (a path, or a process name) did or did not fire in the
    run at TIME: learning, below threshold (with the score's parts), excepted by which
    exception, suppressed by which signal, one host of a rollout, grouped with which hosts.

    Writes no signal. Exit status: 0, or 2 for bad input.
    """
    if not host.strip() or not executable.strip():
        raise InputError("HOST and EXECUTABLE must not be empty", hint="e.g. web-07 /usr/bin/bash")
    config = override(state.config(), "detect", {"shards": list(shards) or None})
    when = time_option(at, "--at")
    sharded = bool(config.detect.shards)
    sources = configured_shards(config.detect) if sharded else None
    with open_store(config, create=sharded) as store:
        answer = why(
            store,
            config.detect,
            host,
            executable,
            int(time.time()) if when is None else when,
            sources=sources,
        )
    if as_json:
        click.echo(orjson.dumps(answer.as_json()).decode())
    else:
        for text in describe(answer):
            click.echo(text)
    return EXIT_OK


def peer_sentence(answer: Why) -> str:
    """The host's peers and which of them use the binary, in words."""
    if not answer.peers:
        return (
            f"peers of {answer.host}: none (no host uses mostly the same paths where paths "
            "tell hosts apart)"
        )
    named = ", ".join(
        f"{p.host} ({p.similarity:g}"
        + (
            f", used it over {p.occasions} half-day{'s' if p.occasions != 1 else ''})"
            if p.occasions
            else ")"
        )
        for p in answer.peers
    )
    return f"peers of {answer.host}: {named}"


def describe(answer: Why) -> list[str]:
    """The explanation as lines of text."""
    lines = [
        f"{answer.executable} on {answer.host}, run at {format_time(answer.at)} "
        f"(window {format_time(answer.window_start)} … {format_time(answer.window_end)})"
    ]
    if answer.learning:
        lines.append(f"  fleet is {answer.learning}")
    if not answer.findings:
        seen = format_time(answer.last_seen) if answer.last_seen is not None else "never"
        lines.append(f"  not used with the network in this window (last seen: {seen})")
    for finding in answer.findings:
        lines.append(f"  bucket {format_time(finding.bucket)}: {finding.sentence}")
        lines.append(
            f"    score {finding.score:g} (threshold {finding.threshold:g}): {finding.reason}"
        )
        parts = finding.explanation["parts"]
        lines.append(
            "    parts: rarity {rarity:g}, after habit and location {after_habit_and_location:g}, "
            "host novelty {host_novelty:g}".format(**parts)
        )
        discount = finding.explanation["rollout"]["discount"]
        if discount > 0:
            lines.append(
                f"    rollout discount {discount:g} (without it: {finding.explanation['score_without_rollout']:g})"
            )
        schedule = finding.explanation.get("schedule")
        if schedule:
            lines.append(
                f"    schedule: recurs {schedule['every']}, occurrence {schedule['occurrence']} "
                f"(before: {schedule['previous']}): score × {1 - schedule['discount']:g}"
            )
    lines.append(f"  {peer_sentence(answer)}")
    for signal in answer.signals[:5]:
        lines.append(
            f"  stored signal {signal['id']} at {signal['bucket']} (score {signal['score']:g}, "
            f"{signal['suppressed_count']} counted on it, group {signal['group']})"
        )
        if signal.get("destination"):
            dest, user = signal["destination"], signal.get("user")
            lines.append(
                f"    first connection to {dest['ip']}:{dest['port']} ({dest['kind']})"
                + (f" as {user}" if user else "")
            )
    return lines
