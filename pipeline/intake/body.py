"""Request bodies: their content encoding and bounded decompression.

The browser SDK compresses batches when ``compressIntakeRequests`` is on: its
compression worker runs a zlib deflate stream (2-byte zlib header, sync-flushed
blocks, a final block and the Adler-32 trailer) and marks the request with the
query parameter ``dd-evp-encoding=deflate``. Other clients use the standard
``Content-Encoding`` header (``deflate``, ``gzip``). Raw deflate without the
zlib header is accepted too, as some HTTP clients send that for ``deflate``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

ENCODINGS = ("deflate", "gzip")


class BodyError(Exception):
    """A request body the intake cannot take, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def content_encoding(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """``deflate``, ``gzip`` or None (identity); raises BodyError 415 for anything else."""
    values = [query.get("dd-evp-encoding", ""), headers.get("Content-Encoding", "")]
    found = {v.strip().lower() for v in values if v.strip() and v.strip().lower() != "identity"}
    if not found:
        return None
    if len(found) > 1 or not found <= set(ENCODINGS):
        raise BodyError(
            415, f"unsupported encoding {', '.join(sorted(found))}; use deflate or gzip (or none)"
        )
    return found.pop()


def _is_zlib_header(data: bytes) -> bool:
    """True when ``data`` starts with a zlib header (deflate method, valid check bits)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """Decode ``data``; raises BodyError 413 past ``limit`` bytes of output, 400 if corrupt.

    Output is produced at most ``limit + 1`` bytes at a time, so a small body
    that inflates to gigabytes (a deflate bomb) costs no more than the limit.
    """
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS if _is_zlib_header(data) else -zlib.MAX_WBITS
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(data, limit + 1)
        if len(out) > limit or decoder.unconsumed_tail:
            raise BodyError(413, f"payload is more than {limit} bytes once decompressed")
        out += decoder.flush()
    except zlib.error as exc:
        raise BodyError(400, f"body is not valid {encoding} data: {exc}") from None
    if len(out) > limit:
        raise BodyError(413, f"payload is more than {limit} bytes once decompressed")
    if not decoder.eof:
        raise BodyError(400, f"{encoding} stream is truncated")
    return out
