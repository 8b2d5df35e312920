"""The raw -> enriched | bad-row step for one message, with no Kafka in sight.

`Processor.process` is total: for any bytes it returns exactly one output, an
enriched action or a bad row, and never raises. Agents are thin loops over it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline import PROCESSOR_NAME, __version__
from pipeline.badrows import BadRowKind, make_bad_row
from pipeline.clock import now_ms
from pipeline.enrich import Enrichment, build_enrichments
from pipeline.enrich.base import Warning
from pipeline.enrich.registry import start_all, stop_all
from pipeline.rollups.windows import FUTURE_TOLERANCE_MS
from pipeline.settings import Settings
from pipeline.topics import ENRICHED_MAX_MESSAGE_BYTES
from pipeline.validate import Failure, RawValidator

_PROCESSOR = {"name": PROCESSOR_NAME, "version": __version__}
#: Actions dated further ahead of their receive time than this are bad rows.
FUTURE_LIMIT_MS = FUTURE_TOLERANCE_MS
#: Largest enriched action (value plus key) written. Below the enriched
#: topic's limit by room for the record framing and for what the late topic
#: adds around an action. Enrichment adds a bounded amount to an action at the
#: raw size limit, so this only catches a raw limit set far above the default.
MAX_ENRICHED_BYTES = ENRICHED_MAX_MESSAGE_BYTES - 64 * 1024
#: Warning messages longer than this are cut (some quote the input they concern).
MAX_WARNING_CHARS = 500


@dataclass(frozen=True, slots=True)
class Output:
    """One result: the encoded record and, for a bad row, its failure kind."""

    value: bytes
    bad_kind: str | None = None
    #: The enriched action as a dict (None for a bad row), for the rollup stage.
    event: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: A copy of an action seen before (see ``Processor.process``'s ``seen``): nothing to write.
    duplicate: bool = False
    #: The event time of a copy (``date``), for the count of copies per window.
    date: int | None = None

    @property
    def enriched(self) -> bool:
        """True for an enriched action, False for a bad row."""
        return self.bad_kind is None


class Processor:
    """Validates and enriches raw actions; everything it cannot accept becomes a bad row."""

    def __init__(self, settings: Settings, enrichments: Sequence[Enrichment] | None = None) -> None:
        self.validator = RawValidator(
            max_bytes=settings.worker.max_message_bytes,
            max_depth=settings.worker.max_depth,
            max_attributes=settings.worker.max_attributes,
        )
        self.enrichments = list(build_enrichments(settings) if enrichments is None else enrichments)
        self.counts = {
            "enriched": 0,
            "duplicates": 0,
            "parse": 0,
            "schema": 0,
            "size": 0,
            "enrichment": 0,
            "warnings": 0,
        }

    async def start(self) -> None:
        """Start the enrichments' background work (a GeoIP file watch, say); on the loop that processes."""
        await start_all(self.enrichments)

    async def stop(self) -> None:
        """Stop what :meth:`start` began."""
        await stop_all(self.enrichments)

    def process(
        self,
        payload: bytes | None,
        *,
        key: bytes | None = None,
        topic: str = "",
        partition: int = -1,
        offset: int = -1,
        received_at: int | None = None,
        seen: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Output:
        """Turn one raw message into exactly one output; never raises.

        ``seen`` (deduplication) tells whether a valid action is a copy of one
        seen before; a copy gives an output with ``duplicate`` set and nothing to
        write, before any enrichment.
        """
        payload = b"" if payload is None else payload
        received = now_ms() if received_at is None else received_at
        try:
            checked = self.validator.check(payload)
            if isinstance(checked, Failure):
                return self._bad(checked.kind, checked.errors, payload, key, topic, partition, offset)
            warnings: list[Warning] = []
            exact = self.validator.exact_integers(payload, checked, warnings)
            if isinstance(exact, Failure):
                return self._bad(exact.kind, exact.errors, payload, key, topic, partition, offset)
            event: dict[str, Any] = exact
            if event["date"] > received + FUTURE_LIMIT_MS:
                # A clock this far ahead would open windows nobody will ever close.
                future = [("$.date", f"date is more than 24 h after the receive time ({received} ms)")]
                return self._bad("schema", future, payload, key, topic, partition, offset)
            if seen is not None and seen(event):
                self.counts["duplicates"] += 1
                return Output(b"", duplicate=True, date=event["date"])
            for enrichment in self.enrichments:
                enrichment.enrich(event, warnings)
            for warning in warnings:
                if len(warning["message"]) > MAX_WARNING_CHARS:
                    warning["message"] = warning["message"][:MAX_WARNING_CHARS] + "… (cut)"
            event["pipeline"] = {
                "processor": _PROCESSOR,
                "received_at": received,
                "enriched_at": now_ms(),
                "source": {"topic": topic, "partition": partition, "offset": offset},
                "warnings": warnings,
            }
            value = orjson.dumps(event)
            size = len(value) + (0 if key is None else len(key))
            if size > MAX_ENRICHED_BYTES:
                # Cannot be written whole, and cutting an action down is no
                # enrichment: it goes to the bad topic, whose rows always fit.
                too_big = [("$", f"enriched action is {size} bytes, more than {MAX_ENRICHED_BYTES}")]
                return self._bad("size", too_big, payload, key, topic, partition, offset)
        except Exception as exc:
            # A bug or an unforeseen input in an enrichment must not lose the
            # action: it becomes a replayable bad row with the original bytes.
            error = [("$", f"{type(exc).__name__}: {exc}")]
            return self._bad("enrichment", error, payload, key, topic, partition, offset)
        self.counts["enriched"] += 1
        self.counts["warnings"] += len(warnings)
        return Output(value, event=event)

    def _bad(
        self,
        kind: BadRowKind,
        errors: Sequence[tuple[str, str]],
        payload: bytes,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
    ) -> Output:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        row = make_bad_row(kind, list(errors), payload, topic, partition, offset, key)
        return Output(orjson.dumps(row), kind)

    def stats(self) -> dict[str, dict[str, float]]:
        """Counters of the processor and of each enrichment."""
        return {"processor": dict(self.counts), **{e.name: e.stats() for e in self.enrichments}}
