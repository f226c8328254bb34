"""Deterministic YAML text: key order as given, SQL as literal blocks, no timestamps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper that indents list items under their key, as the Fleet docs do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_document(data: Any) -> str:
    """One YAML document (no `---`), keys in insertion order."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
        indent=2,
    )


def comment_block(lines: Sequence[str]) -> str:
    """`# ...` lines, each ending in a newline."""
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def dump_documents(header: Sequence[str], documents: Sequence[Any]) -> str:
    """A comment header, then each document introduced by `---`."""
    return comment_block(header) + "".join("---\n" + dump_document(doc) for doc in documents)
