"""Write benchmark tables into docs/benchmarks.md, one marked section per benchmark."""

from __future__ import annotations

import platform
import re
import resource
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Written by `make bench` (tests/benchmarks/); each section is replaced when its
benchmark runs. Numbers are from the machine named in each section; CI machines here
have 2 cores. Goals come from the issues that asked for them.
"""


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident set size in MiB of this process (or of its finished children)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` in docs/benchmarks.md and print it."""
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    machine = f"{platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}"
    section = f"<!-- bench:{name} -->\n## {name}\n\n_Measured {stamp} on {machine}._\n\n{body.strip()}\n<!-- /bench:{name} -->"
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S
    )
    text = (
        pattern.sub(lambda _m: section, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section + "\n"
    )
    DOC.write_text(text)
    print("\n" + section)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
