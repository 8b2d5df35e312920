"""The properties the fuzz campaign and the corpus replay check, for one input each.

Targets:

- ``process``: :meth:`pipeline.process.Processor.process` on raw bytes;
- ``ndjson`` / ``actions``: the intake's body parsers
  (:func:`pipeline.intake.events.parse_ndjson` / ``parse_actions``), each
  record they make then going through ``process`` as a worker would;
- ``deflate`` / ``gzip``: :func:`pipeline.intake.body.decompress` then ``ndjson``.

A check returns the outputs' sizes (for the campaign's figures) and raises
:class:`Finding` for any broken property: an exception other than the
documented refusals, an output over its topic's limit, a record that breaks
its schema, or a bad row whose payload is not byte-exact (or, truncated, whose
prefix, size or hash does not match the input). Timing is the campaign's
business, never a test's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.badrows import blob_data, original_payload
from pipeline.intake.body import BodyError, decompress
from pipeline.intake.events import Stamps, parse_actions, parse_ndjson
from pipeline.process import Processor
from pipeline.schemas import validate_record
from pipeline.topics import BAD_MAX_MESSAGE_BYTES, ENRICHED_MAX_MESSAGE_BYTES, LARGE_MESSAGE_BYTES

TARGETS = ("process", "ndjson", "actions", "deflate", "gzip")
#: The intake's defaults (RUM_INTAKE_MAX_EVENT_BYTES, RUM_INTAKE_MAX_PAYLOAD_BYTES).
MAX_EVENT_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 5 * 1024 * 1024
STAMPS = Stamps(client_ip="81.2.69.142", user_agent="Mozilla/5.0 fuzz", received_at=1_764_340_000_500)


class Finding(Exception):
    """A broken property, with what it concerns."""


@dataclass
class Sizes:
    """Largest output seen per topic in one check."""

    largest: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, size: int) -> None:
        self.largest[topic] = max(size, self.largest.get(topic, 0))


def check_process(processor: Processor, payload: bytes, key: bytes | None, sizes: Sizes) -> None:
    """One raw record through the processor: one output, within its topic, schema-valid, truthful."""
    try:
        out = processor.process(payload, key=key, topic="rum.actions.raw", partition=0, offset=1)
    except Exception as exc:
        raise Finding(f"process raised {type(exc).__name__}: {exc}") from exc
    size = len(out.value) + (0 if key is None else len(key))
    record: dict[str, Any] = orjson.loads(out.value)
    if out.enriched:
        sizes.add("enriched", size)
        if size > ENRICHED_MAX_MESSAGE_BYTES:
            raise Finding(f"enriched record of {size} bytes is over the topic's limit")
        errors = validate_record("enriched-action.v1", record)
        if errors:
            raise Finding(f"enriched record breaks its schema: {errors[:3]}")
        return
    sizes.add("bad", size)
    if size > BAD_MAX_MESSAGE_BYTES:
        raise Finding(f"bad row of {size} bytes is over the topic's limit")
    errors = validate_record("bad-row.v1", record)
    if errors:
        raise Finding(f"bad row breaks its schema: {errors[:3]}")
    check_blob(record["payload"], payload)


def check_blob(blob: dict[str, Any], original: bytes) -> None:
    """A bad row's payload is the input byte-exact, or a true prefix with the input's size and hash."""
    if blob["size"] != len(original):
        raise Finding(f"bad row says {blob['size']} bytes, the input had {len(original)}")
    if blob.get("truncated"):
        if not original.startswith(blob_data(blob)):
            raise Finding("truncated bad row payload is not a prefix of the input")
        if blob["sha256"] != hashlib.sha256(original).hexdigest():
            raise Finding("truncated bad row payload has the wrong hash")
    elif original_payload({"payload": blob}) != original:
        raise Finding("bad row payload is not byte-exact")


def check_intake(processor: Processor, target: str, body: bytes, sizes: Sizes) -> int:
    """A request body through the intake's decoding and parsing, then its records through the processor.

    Returns the number of events the body held (records and rejections).
    """
    if target in ("deflate", "gzip"):
        try:
            body = decompress(body, target, MAX_PAYLOAD_BYTES)
        except BodyError:
            return 0  # a documented refusal (400/413)
        except Exception as exc:
            raise Finding(f"decompress raised {type(exc).__name__}: {exc}") from exc
        target = "ndjson"
    try:
        if target == "ndjson":
            batch = parse_ndjson(body, STAMPS, MAX_EVENT_BYTES)
        else:
            try:
                batch = parse_actions(body, STAMPS, MAX_EVENT_BYTES)
            except ValueError:
                return 0  # the documented refusal of a body that is not JSON
    except Exception as exc:
        raise Finding(f"{target} parser raised {type(exc).__name__}: {exc}") from exc
    for record in batch.records:
        size = len(record.value) + (0 if record.key is None else len(record.key))
        sizes.add(record.route, size)
        if size > LARGE_MESSAGE_BYTES:
            raise Finding(f"intake record of {size} bytes is over the {record.route} topic's limit")
        if record.route == "raw":
            check_process(processor, record.value, record.key, sizes)
    return len(batch.records) + len(batch.rejections)


def check(processor: Processor, target: str, data: bytes, sizes: Sizes) -> int:
    """Dispatch one input to its target's checks; return how many events it held."""
    if target == "process":
        check_process(processor, data, b"s-1", sizes)
        return 1
    return check_intake(processor, target, data, sizes)
