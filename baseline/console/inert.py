"""Attacker-controlled text made inert for a page: process names, paths and cmdlines come
from the hosts being watched, so beyond HTML escaping (the templates' autoescape), control
and bidirectional-formatting characters are shown as visible escapes, never obeyed."""

from __future__ import annotations

import re

# C0 and C1 controls (tab and newline kept), zero-width and bidi formatting characters,
# line/paragraph separators, BOM, and the Unicode "tag" block (invisible text).
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
    "\U000e0000-\U000e007f]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_SHOWN = 4000  # characters of one value shown on a page (a cmdline can be huge)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def inert(value: object) -> str:
    """`value` as text with invisible and direction-changing characters made visible
    (`\\u202e`), and cut to MAX_SHOWN characters (with a count of the rest)."""
    text = value if isinstance(value, str) else str(value)
    text = _SURROGATE.sub("\ufffd", text)  # an undecodable byte kept by surrogateescape
    if len(text) > MAX_SHOWN:
        text = f"{text[:MAX_SHOWN]}… (+{len(text) - MAX_SHOWN:,} characters)"
    return _INVISIBLE.sub(_visible, text)
