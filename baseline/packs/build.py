"""Write the generated packs, or check that the files on disk are current."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rarenet.baseline.packs.queries import leave_out, load_queries
from rarenet.baseline.packs.render import GENERATED, render_all

# Every generated text file except the JSON pack starts with one of these.
MARKERS = (f"# {GENERATED[0]}", f"<!-- {GENERATED[0]}")


@dataclass
class BuildReport:
    """Relative paths under the output directory, each list sorted."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # check: differs/missing/extra; build: removed
    problems: dict[str, str] = field(default_factory=dict)  # check: path -> why it is stale


def build(
    queries_dir: Path, out_dir: Path, *, check: bool = False, without: tuple[str, ...] = ()
) -> BuildReport:
    """Render every pack from `queries_dir` (but the optional queries named in
    `without`); write into `out_dir` unless `check`.

    A leftover file in `out_dir` that starts with the generated header but is no
    longer produced is "extra": `check` reports it, a build removes it. Other files are
    never touched.
    """
    expected = render_all(leave_out(load_queries(queries_dir), without))
    report = BuildReport()
    for rel, text in sorted(expected.items()):
        target = out_dir / rel
        current = _read(target)
        if current == text:
            report.unchanged.append(rel)
        elif check:
            report.stale.append(rel)
            report.problems[rel] = "missing" if current is None else "out of date"
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8", newline="\n")
            report.written.append(rel)
    for rel in _leftovers(out_dir, expected):
        report.stale.append(rel)
        if check:
            report.problems[rel] = "extra (no longer generated)"
        else:
            (out_dir / rel).unlink()
    return report


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return ""  # not ours as written: out of date


def _leftovers(out_dir: Path, expected: dict[str, str]) -> list[str]:
    if not out_dir.is_dir():
        return []
    found = []
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir).as_posix()
        if not path.is_file() or rel in expected or rel.startswith(".") or "/." in rel:
            continue
        if (_read(path) or "").startswith(MARKERS):
            found.append(rel)
    return found
