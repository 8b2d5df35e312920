"""The contract every enrichment follows, and what a plug-in declares beside its code.

An enrichment is one module holding one class. Besides ``enrich`` and
``stats`` the class declares, as class attributes:

- ``settings_model``: a pydantic model of its settings; it becomes the group
  ``enrich.<name>`` of the one settings model (field ``bar`` of enrichment
  ``foo`` is read from ``RUM_ENRICH__FOO__BAR``), so it is validated and
  documented with every other setting;
- ``schema``: its part of the enriched action's JSON Schema, as ``$defs``
  entries (``{"geo": {...}}``); entries several enrichments write (``view``)
  are merged property by property;
- ``metrics``: which of its ``stats()`` counters become Prometheus metrics,
  under which names and labels;
- optionally ``async start()`` / ``async stop()``, run by the worker around
  its lifetime (for data that reloads in the background).

:class:`Plugin` gives these defaults, so a class only states what it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self

from pydantic import BaseModel

if TYPE_CHECKING:
    from pipeline.settings import Settings

#: A warning recorded in the enriched record: the enrichment, the JSON path it
#: concerns and what happened. A warning is not a failure: the event is kept.
Warning = dict[str, str]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One counter of an enrichment's ``stats()`` published as a Prometheus metric.

    Specs that share a ``name`` (the cache metrics of several enrichments)
    become one metric family with one sample per spec; a counter missing from
    ``stats()`` is left out of that scrape.
    """

    stat: str
    name: str
    help: str
    kind: Literal["counter", "gauge"] = "counter"
    labels: Mapping[str, str] = field(default_factory=dict)


def cache_metrics(cache: str) -> tuple[MetricSpec, ...]:
    """The metrics of an LRU cache; ``stats()`` gives its ``cache_hits``, ``cache_misses``, ``cache_size``."""
    label = {"cache": cache}
    hits = "Lookups answered by an enrichment's LRU cache."
    misses = "Lookups an enrichment's LRU cache could not answer."
    entries = "Entries in an enrichment's LRU cache."
    return (
        MetricSpec("cache_hits", "rum_enrich_cache_hits", hits, labels=label),
        MetricSpec("cache_misses", "rum_enrich_cache_misses", misses, labels=label),
        MetricSpec("cache_size", "rum_enrich_cache_entries", entries, "gauge", label),
    )


def object_schema(description: str, properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A JSON Schema object with its description and properties (``more``: other keywords)."""
    return {"description": description, "type": "object", "properties": properties, **more}


def string_schema(description: str, **more: Any) -> dict[str, Any]:
    """A JSON Schema string with its description (``more``: other keywords, e.g. ``enum``)."""
    return {"description": description, "type": "string", **more}


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


class NoSettings(BaseModel):
    """The settings model of an enrichment that has nothing to configure."""


class Plugin:
    """Defaults of what an enrichment class declares (see the module docstring)."""

    name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]] = NoSettings
    schema: ClassVar[Mapping[str, Any]] = {}
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the enrichment from the validated settings (default: no arguments)."""
        return cls()

    async def start(self) -> None:
        """Start background work (a worker calls it once, on its event loop)."""

    async def stop(self) -> None:
        """Stop what ``start`` began."""
