"""Where `rarenet packs build` reads queries/ and writes packs/ when no directory is given.

The defaults are the project's own `queries/` and `packs/`, never the current directory:
the command gives the same answer from anywhere. In a source checkout they are the
top-level folders; a wheel ships them inside the `rarenet` package, where `--check`
reads them but a build without `--out` is refused (nothing is written into
site-packages). Explicit directories are used as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rarenet.baseline.errors import InputError

# The directory that holds `baseline/`, `queries/` and `packs/`: the checkout's top level
# (this file's real path, past the rarenet/baseline link), or a wheel's rarenet/ package.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
QUERIES = "queries"
PACKS = "packs"
CHECKOUT_MARK = "pyproject.toml"  # only a source checkout has it beside queries/


@dataclass(frozen=True)
class PackDirs:
    """The directory of `*.sql` queries and the directory the packs go to."""

    queries: Path
    out: Path


def resolve_dirs(queries: Path | None, out: Path | None, *, check: bool) -> PackDirs:
    """`queries` and `out` as given; each one left out is the project's own.

    InputError (naming the path looked at and the option to pass) when a default is
    needed but not there, or when a build would write into an installed copy's packs/.
    """
    root = SOURCE_ROOT
    if queries is None:
        if not (root / QUERIES).is_dir():
            raise InputError(
                "queries directory not found next to the installed package",
                where=str(root / QUERIES),
                hint="pass --queries DIR and --out DIR",
            )
        queries = root / QUERIES
    if out is None:
        if not (root / PACKS).is_dir():
            raise InputError(
                "no packs directory next to the installed package",
                where=str(root / PACKS),
                hint="pass --out DIR",
            )
        if not check and not (root / CHECKOUT_MARK).is_file():
            raise InputError(
                "the packs installed with rarenet are not rebuilt in place (only checked)",
                where=str(root / PACKS),
                hint="pass --out DIR to write them elsewhere",
            )
        out = root / PACKS
    return PackDirs(queries=queries, out=out)
