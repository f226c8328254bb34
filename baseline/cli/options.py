"""Helpers the commands share for their options: shard URLs, times and input sizes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from rarenet.baseline.errors import InputError
from rarenet.baseline.units import parse_time


def shards_option(purpose: str) -> Callable[[Any], Any]:
    """`--shard URL` (repeatable, into `shards`): a host shard's `rarenet serve`;
    `purpose` ends the help text."""
    return click.option(
        "--shard",
        "shards",
        multiple=True,
        metavar="URL",
        help="A host shard's `rarenet serve` (repeat for each; default: [detect] shards)" + purpose,
    )


def time_option(value: str | None, option: str) -> int | None:
    """A time option's value (unix seconds or ISO 8601) as unix seconds; None when not
    given; InputError naming `option` (exit 2) when it is not a time in range."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise InputError(str(exc), where=option) from None


def input_size(name: str) -> int:
    """Bytes of an input file for a progress bar (0 for stdin, `-`, or one not readable)."""
    try:
        return os.path.getsize(name) if name != "-" else 0
    except OSError:
        return 0
