"""docs/cli.md, the CLI reference, generated from the commands' own help (click), so the
documentation cannot drift: `make lint` runs `--check`, `make cli-reference` rewrites it.

    python -m rarenet.baseline.cli.reference [--check] [docs/cli.md]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

WIDTH = 100  # help is wrapped here whatever the terminal
DEFAULT = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
HEADER = (
    "# rarenet CLI reference\n\n"
    "Generated from each command's `--help` by `make cli-reference` "
    "(baseline/cli/reference.py); `make lint` fails when it is stale. Exit codes, "
    "configuration and examples: README.md and docs/configuration.md.\n"
)


def _commands(
    command: click.Command, path: list[str], parent: click.Context | None
) -> Iterator[tuple[str, str]]:
    """(full name, help text) of `command` and every subcommand, depth first by name."""
    ctx = command.make_context(
        path[-1],
        [],
        parent=parent,
        resilient_parsing=True,  # no argument is required to read the help
        terminal_width=WIDTH,
        max_content_width=WIDTH,
    )
    yield " ".join(path), command.get_help(ctx)
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, [*path, name], ctx)


def reference() -> str:
    """The whole reference as Markdown."""
    from rarenet.baseline.cli import main

    parts = [HEADER]
    for name, text in _commands(main, ["rarenet"], None):
        parts.append(f"\n## `{name}`\n\n```text\n{text.rstrip()}\n```\n")
    return "".join(parts)


def run(argv: list[str]) -> int:
    """`--check`: exit 1 with a hint when the file differs; otherwise write it."""
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    target = Path(paths[0]) if paths else DEFAULT
    text = reference()
    if check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run `make cli-reference`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
