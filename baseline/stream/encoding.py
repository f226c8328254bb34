"""Messages Fleet compressed: its NATS destination can gzip, snappy or zstd every log
(`nats.compression`), saying which in the `Content-Encoding` header; snappy is a raw
block (no framing). `decoded` undoes it with memory bounded by `limit`, the largest
result line rarenet takes (`[ingest] max_body`): a small message that would expand past
it is refused before it is expanded, never held whole.

cramjam (one well-kept binding of the snappy and zstd reference libraries) decodes
snappy and zstd into a buffer of the limit's size; gzip is the standard library's.
"""

from __future__ import annotations

import zlib

import cramjam

ENCODINGS = ("gzip", "snappy", "zstd")


def decoded(data: bytes, encoding: str | None, limit: int) -> bytes:
    """`data` as sent before `encoding` (None, "" or identity: as is); ValueError saying
    why when it is not valid in that encoding or decodes to more than `limit` bytes."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return data
    if name == "gzip":
        return _gunzip(data, limit)
    if name == "snappy":
        return _unsnappy(data, limit)
    if name == "zstd":
        return _unzstd(data, limit)
    raise ValueError(
        f"unknown Content-Encoding {encoding!r} (rarenet reads {', '.join(ENCODINGS)})"
    )


def _too_big(limit: int) -> ValueError:
    return ValueError(f"decompresses to more than {limit} bytes ([ingest] max_body)")


def _gunzip(data: bytes, limit: int) -> bytes:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"not valid gzip: {exc}") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise _too_big(limit)
    if not inflate.eof:
        raise ValueError("not valid gzip: truncated")
    return out


def _unsnappy(data: bytes, limit: int) -> bytes:
    try:
        size = int(cramjam.snappy.decompress_raw_len(data))
    except cramjam.DecompressionError as exc:
        raise ValueError(f"not a valid snappy block: {exc}") from None
    if size > limit:
        raise _too_big(limit)
    out = bytearray(size)
    try:
        cramjam.snappy.decompress_raw_into(data, out)
    except cramjam.DecompressionError as exc:
        raise ValueError(f"not a valid snappy block: {exc}") from None
    return bytes(out)


def _unzstd(data: bytes, limit: int) -> bytes:
    out = bytearray(limit + 1)  # one byte more: a result that fills it is too big
    try:
        size = int(cramjam.zstd.decompress_into(data, out))
    except cramjam.DecompressionError as exc:
        if "whole buffer" in str(exc):
            raise _too_big(limit) from None
        raise ValueError(f"not valid zstd: {exc}") from None
    if size > limit:
        raise _too_big(limit)
    return bytes(out[:size])
