"""Terminal-safe output: data a command prints can never drive the terminal.

Process names, paths, command lines and host names come from hosts and may carry
escape sequences (`ESC[2J`, an OSC window title, a bidi override). Every command's
standard output goes through `InertStream`, which writes each control or bidi character
other than newline and tab as a `\\uXXXX` escape: inert on a terminal, and still valid
JSON inside a JSON string (orjson already escapes the C0 range), so `--json` output
parses to the same values. Error lines go through `inert_line`; coloured summaries
escape their data segment by segment (`summary.fit`) and print with `echo_styled`.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

import click

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def inert_line(text: str) -> str:
    """`text` with every control and bidi character except newline and tab escaped."""
    return _UNSAFE.sub(_escaped, text)


class InertStream:
    """A text stream that escapes what `inert_line` escapes on its way to `inner`; bytes
    written to `.buffer` (a log written to stdout) pass as they are."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(inert_line(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def echo_styled(line: str) -> None:
    """Print a line built by `summary.fit` — its data already made inert there, its
    colours our own — past the stream's escaping (which would show the colours as text)."""
    stream = sys.stdout
    inner = stream._inner if isinstance(stream, InertStream) else stream
    click.echo(line, file=inner)
