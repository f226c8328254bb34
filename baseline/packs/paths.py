"""Where `rarenet packs build` reads queries/ and writes packs/ when no directory is given.

The defaults are the project's own `queries/` and `packs/`, found next to the installed
`baseline` package (the source tree), never the current directory: the command gives
the same answer from anywhere. Explicit directories are used as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from baseline.errors import InputError

# The source tree: the directory that holds `baseline/` (and, in a checkout, queries/).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
QUERIES = "queries"
PACKS = "packs"


@dataclass(frozen=True)
class PackDirs:
    """The directory of `*.sql` queries and the directory the packs go to."""

    queries: Path
    out: Path


def resolve_dirs(queries: Path | None, out: Path | None) -> PackDirs:
    """`queries` and `out` as given; each one left out is the source tree's own.

    InputError when a default is needed but rarenet runs without its source tree
    (installed from a wheel): it names the path looked at and the option to pass.
    """
    root = SOURCE_ROOT
    has_tree = (root / QUERIES).is_dir()
    if queries is None:
        if not has_tree:
            raise InputError(
                "queries directory not found next to the installed package",
                where=str(root / QUERIES),
                hint="pass --queries DIR and --out DIR",
            )
        queries = root / QUERIES
    if out is None:
        if not has_tree:
            raise InputError(
                "no default packs directory: the source tree is not next to the installed package",
                where=str(root / PACKS),
                hint="pass --out DIR",
            )
        out = root / PACKS
    return PackDirs(queries=queries, out=out)
