"""The contract every enrichment follows."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from pipeline.settings import Settings

#: A warning recorded in the enriched record: the enrichment, the JSON path it
#: concerns and what happened. A warning is not a failure: the event is kept.
Warning = dict[str, str]


class Enrichment(Protocol):
    """Adds context to a validated raw action, in place.

    An enrichment never raises for bad input data: what it cannot use it
    reports in ``warnings`` and leaves the event otherwise untouched.
    """

    name: ClassVar[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Enrichment:
        """Build the enrichment from the validated settings."""
        ...

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        """Add this enrichment's fields to ``event``; append warnings for unusable input."""
        ...

    def stats(self) -> dict[str, float]:
        """Counters for metrics and benchmarks (cache hits, misses, warnings...)."""
        ...
