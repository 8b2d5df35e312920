"""Bad rows: one typed record per rejected input, with its original bytes.

A bad row (``schemas/bad-row.v1.json``) says why the input failed, every
error with its JSON path, who rejected it and when, where it came from, and
keeps the payload and key byte-exact so it can be replayed after a fix.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson

from pipeline import PROCESSOR_NAME, __version__
from pipeline.errors import PipelineError

BadRowKind = Literal["parse", "schema", "size", "enrichment", "intake"]

#: Value of the ``schema_version`` field of every bad row this module writes.
SCHEMA_VERSION = "1"


def encode_bytes(data: bytes) -> dict[str, Any]:
    """Bytes as a bad-row blob: UTF-8 text when they decode, else base64."""
    try:
        return {"encoding": "utf-8", "data": data.decode("utf-8"), "size": len(data)}
    except UnicodeDecodeError:
        return {"encoding": "base64", "data": base64.b64encode(data).decode("ascii"), "size": len(data)}


def decode_bytes(blob: dict[str, Any]) -> bytes:
    """The exact bytes a blob made by :func:`encode_bytes` holds."""
    encoding = blob.get("encoding")
    if encoding == "utf-8":
        data = blob["data"].encode("utf-8")
    elif encoding == "base64":
        try:
            data = base64.b64decode(blob["data"], validate=True)
        except binascii.Error as exc:
            raise PipelineError(f"bad row holds invalid base64: {exc}") from exc
    else:
        raise PipelineError(f"bad row holds bytes in an unknown encoding {encoding!r}")
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
) -> dict[str, Any]:
    """Build a bad row (valid against ``bad-row.v1.json``) for a rejected record.

    ``errors`` are (JSON path, message) pairs, at least one, as in
    :class:`pipeline.validate.Failure`. ``now_ms`` is the failure time in
    milliseconds since the epoch; the current time when omitted.
    """
    error_list = [{"path": path, "message": message} for path, message in errors]
    if not error_list:
        raise ValueError("a bad row needs at least one error")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "errors": error_list,
        "processor": {"name": PROCESSOR_NAME, "version": __version__},
        "failed_at": time.time_ns() // 1_000_000 if now_ms is None else now_ms,
        "source": {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": None if key is None else encode_bytes(key),
        },
        "payload": encode_bytes(payload),
    }


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
