"""Bad rows: one typed record per rejected input, with its original bytes.

A bad row (``schemas/bad-row.v1.json``) says why the input failed, every
error with its JSON path, who rejected it and when, where it came from, and
keeps the payload and key byte-exact so it can be replayed after a fix.

Every bad row fits the bad topic's ``max.message.bytes`` together with its
Kafka key, even when its input filled the raw topic's: the bytes are written
as text only while JSON escaping at most doubles them (base64 otherwise),
errors are bounded in number and length, and when the payload still does not
fit, the row keeps its first bytes with the original size and SHA-256 (the
size-violation row of Snowplow), marked ``truncated``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson

from pipeline import PROCESSOR_NAME, __version__
from pipeline.clock import now_ms as wall_clock_ms
from pipeline.errors import PipelineError
from pipeline.topics import BAD_MAX_MESSAGE_BYTES

BadRowKind = Literal["parse", "schema", "size", "enrichment", "intake"]

#: Value of the ``schema_version`` field of every bad row this module writes.
SCHEMA_VERSION = "1"

#: Room kept below the topic limit for the Kafka record's own framing
#: (record batch header, offsets, timestamps, headers).
RECORD_MARGIN = 16 * 1024
#: Largest bad row (its JSON value plus its Kafka key) :func:`make_bad_row` builds.
MAX_BAD_ROW_BYTES = BAD_MAX_MESSAGE_BYTES - RECORD_MARGIN
#: At most this many errors are listed; the last entry then says how many were left out.
MAX_ERRORS = 100
#: Error paths and messages longer than this (in characters) are cut, with a mark that says so.
MAX_ERROR_CHARS = 2000
#: The key inside the row is bounded too (the Kafka key of the bad row is the original one).
MAX_KEY_CHARS = 64 * 1024


#: Bytes orjson writes as a two-character escape inside a JSON string.
_SHORT_ESCAPES = b'\b\t\n\f\r"\\'
#: Bytes it writes as ``\u00XX``: the other C0 control characters.
_LONG_ESCAPES = bytes(b for b in range(0x20) if b not in _SHORT_ESCAPES)


def _escaped_len(data: bytes) -> int:
    """Bytes the UTF-8 text ``data`` takes inside a JSON string, as orjson writes it (without the quotes).

    orjson escapes only ``"``, ``\\`` and the C0 controls, each one byte in
    UTF-8 that no multi-byte character contains, so counting them on the bytes
    gives the exact length; two C-speed passes, where encoding the string
    built a copy up to six times its size (1 MB of control bytes: 6 MB).
    """
    size = len(data)
    short = size - len(data.translate(None, _SHORT_ESCAPES))
    long = size - len(data.translate(None, _LONG_ESCAPES))
    return size + short + 5 * long


def _utf8_prefix(data: bytes, max_chars: int) -> bytes:
    """The longest prefix of valid UTF-8 ``data`` that JSON-escapes to at most ``max_chars``.

    Starts from a guess and shrinks it in proportion to the overshoot, cutting
    only at character boundaries, so it takes a few passes whatever the input.
    """
    n = min(len(data), max_chars)
    while n > 0:
        prefix = data[:n].decode("utf-8", "ignore").encode("utf-8")  # drops only a cut last character
        escaped = _escaped_len(prefix)
        if escaped <= max_chars:
            return prefix
        n = min(n - 1, int(n * max_chars / escaped))
    return b""


def encode_bytes(data: bytes, max_chars: int | None = None) -> dict[str, Any]:
    """Bytes as a bad-row blob: UTF-8 text when they decode, else base64.

    Text is chosen only while its JSON-escaped form is at most twice the
    bytes (control characters escape to six), so the blob never costs more
    than twice the input; base64 costs 4/3. When ``max_chars`` is given and
    the encoded data would be longer, the blob holds the longest prefix that
    fits, ``truncated: true`` and the SHA-256 of the whole input; ``size``
    stays the size of the whole input.
    """
    size = len(data)
    base64_len = 4 * ((size + 2) // 3)
    text: str | None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and (escaped := _escaped_len(data)) <= 2 * size:
        if max_chars is None or escaped <= max_chars:
            return {"encoding": "utf-8", "data": text, "size": size}
        prefix = _utf8_prefix(data, max_chars)
        return _truncated("utf-8", prefix.decode("utf-8"), data)
    if max_chars is None or base64_len <= max_chars:
        return {"encoding": "base64", "data": base64.b64encode(data).decode("ascii"), "size": size}
    kept = max(0, max_chars) // 4 * 3
    return _truncated("base64", base64.b64encode(data[:kept]).decode("ascii"), data)


def _truncated(encoding: str, data: str, whole: bytes) -> dict[str, Any]:
    return {
        "encoding": encoding,
        "data": data,
        "size": len(whole),
        "truncated": True,
        "sha256": hashlib.sha256(whole).hexdigest(),
    }


def blob_data(blob: dict[str, Any]) -> bytes:
    """The bytes a blob's ``data`` holds: all of them, or the first ones of a truncated blob."""
    encoding = blob.get("encoding")
    if encoding == "utf-8":
        return str(blob["data"]).encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(blob["data"], validate=True)
        except binascii.Error as exc:
            raise PipelineError(f"bad row holds invalid base64: {exc}") from exc
    raise PipelineError(f"bad row holds bytes in an unknown encoding {encoding!r}")


def decode_bytes(blob: dict[str, Any]) -> bytes:
    """The exact bytes a blob made by :func:`encode_bytes` holds.

    Raises PipelineError for a truncated blob: its first bytes alone would not
    replay the original input (:func:`blob_data` reads them).
    """
    data = blob_data(blob)
    if blob.get("truncated"):
        raise PipelineError(
            f"bad row holds only the first {len(data)} of {blob['size']} bytes "
            f"(sha256 {blob.get('sha256')}): the original was too large to keep whole"
        )
    if len(data) != blob["size"]:
        # A size mismatch means the record was altered (e.g. text re-encoded
        # on the way); replaying it would not replay the original input.
        raise PipelineError(f"bad row payload is {len(data)} bytes, but its size says {blob['size']}")
    return data


def make_bad_row(
    kind: BadRowKind,
    errors: Iterable[tuple[str, str]],
    payload: bytes,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    now_ms: int | None = None,
    max_bytes: int = MAX_BAD_ROW_BYTES,
) -> dict[str, Any]:
    """Build a bad row (valid against ``bad-row.v1.json``) for a rejected record.

    ``errors`` are (JSON path, message) pairs, at least one, as in
    :class:`pipeline.validate.Failure`. ``now_ms`` is the failure time in
    milliseconds since the epoch; the current time when omitted.

    The serialized row plus ``key`` (the Kafka key it is sent with) is at
    most ``max_bytes``: beyond that the payload is truncated (see the module
    docstring). Only a key itself close to ``max_bytes`` leaves no room at all.
    """
    error_list = _bounded_errors(errors)
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "errors": error_list,
        "processor": {"name": PROCESSOR_NAME, "version": __version__},
        "failed_at": wall_clock_ms() if now_ms is None else now_ms,
        "source": {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": None if key is None else encode_bytes(key, MAX_KEY_CHARS),
        },
        "payload": {"encoding": "base64", "data": "", "size": 0},
    }
    # Everything but the payload's data, plus room for the truncation fields
    # (a 64-character hash and its names) and for size digits.
    fixed = len(orjson.dumps(row)) + 160
    room = max_bytes - (0 if key is None else len(key)) - fixed
    row["payload"] = encode_bytes(payload, max(0, room))
    return row


def _bounded_errors(errors: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """At most MAX_ERRORS errors of at most MAX_ERROR_CHARS each; what is cut is said."""
    pairs = list(errors)
    if not pairs:
        raise ValueError("a bad row needs at least one error")
    listed = pairs if len(pairs) <= MAX_ERRORS else pairs[: MAX_ERRORS - 1]
    error_list = [{"path": _cut(path), "message": _cut(message)} for path, message in listed]
    if len(listed) < len(pairs):
        error_list.append({"path": "$", "message": f"{len(pairs) - len(listed)} more errors not listed"})
    return error_list


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[: MAX_ERROR_CHARS - 60]}… (cut: {len(text)} characters in all)"


def make_intake_bad_row(
    errors: Iterable[tuple[str, str]], payload: bytes, intake: Mapping[str, Any], now_ms: int
) -> dict[str, Any]:
    """A bad row of kind ``intake``: an event the HTTP intake refused, before it reached Kafka.

    ``intake`` describes the request (see ``source.intake`` in the schema). The
    payload is kept byte-exact, as base64 when that is shorter than the text
    once JSON-escaped (control characters take six bytes each as text), so
    the row stays within 4/3 of the event's size plus a small envelope.
    """
    error_list = [{"path": path, "message": message} for path, message in errors]
    if not error_list:
        raise ValueError("a bad row needs at least one error")
    blob = encode_bytes(payload)
    if blob["encoding"] == "utf-8" and len(orjson.dumps(blob["data"])) > 4 * (len(payload) + 2) // 3 + 2:
        blob = {"encoding": "base64", "data": base64.b64encode(payload).decode("ascii"), "size": len(payload)}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "intake",
        "errors": error_list,
        "processor": {"name": PROCESSOR_NAME, "version": __version__},
        "failed_at": now_ms,
        "source": {"intake": dict(intake)},
        "payload": blob,
    }


def original_payload(bad_row: dict[str, Any]) -> bytes:
    """The exact payload bytes of the record the bad row rejected (for replay)."""
    return decode_bytes(bad_row["payload"])


def original_key(bad_row: dict[str, Any]) -> bytes | None:
    """The exact key bytes of the record the bad row rejected, or None if it had none."""
    key = bad_row["source"].get("key")  # intake rows have no Kafka key
    return None if key is None else decode_bytes(key)
