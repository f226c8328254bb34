"""Is this an osquery result log at all? Asked of a new file's head before any line
is read, so a syslog file or a pretty-printed Fleet body is named once ("not an osquery
result log") instead of quarantined line by line.

A result log has one JSON document per line. A head in which none of the first
`SNIFF_LINES` non-empty lines even starts like a JSON object or array is not one (a
syslog file); a head that starts with a lone `{` or `[` is one JSON document spread over
lines (a pretty-printed Fleet body, or `jq .` output), which the error says how to make
one line each. Anything else is read as usual: broken JSON lines are quarantined one by
one, to be fixed and ingested again.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

from rarenet.baseline.ingest.reader import is_json

SNIFF_BYTES = 64 << 10  # at most this much of a file's head is looked at
SNIFF_LINES = 20  # non-empty lines that must all fail for a file to be named


def not_a_result_log(stream: BinaryIO) -> str | None:
    """Why the file whose head `stream` reads is not an osquery result log, or None
    when it may be one (some line in its head is JSON, or it is empty)."""
    try:
        head = stream.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return None  # a damaged file: the reader names it, keeping what it can read
    head = head.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    lines = [line.strip() for line in head.split(b"\n")]
    if len(head) == SNIFF_BYTES and lines:
        lines.pop()  # the last line may be cut
    seen = [line for line in lines if line][:SNIFF_LINES]
    if not seen:
        return None
    if seen[0] in (b"{", b"[") and not is_json(seen[0]):
        return (
            "not an osquery result log: one JSON document spread over many lines "
            "(pretty-printed); result logs have one JSON document per line — reformat it "
            "with `jq -c .` (a Fleet body: `jq -c '.data[]'`) and ingest that"
        )
    if any(line.startswith((b"{", b"[")) for line in seen):
        return None  # JSON lines, some perhaps broken: those are quarantined one by one
    return (
        f"not an osquery result log: none of its first {len(seen)} non-empty lines is a "
        "JSON document (is it a syslog or other text log?); nothing was read from it"
    )
