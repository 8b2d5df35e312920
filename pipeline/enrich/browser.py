"""Browser enrichment: ``browser``, ``os`` and ``device`` from ``http.useragent``.

User agents are parsed by :mod:`pipeline.enrich.useragent` (the results of
the ``user-agents`` package, in a few microseconds); :class:`BrowserEnrichment`
keeps finished results in an LRU cache bounded in entries and in bytes.

Hostile input is bounded: only the first ``MAX_PARSED_CHARS`` characters are
parsed, and a longer ``http.useragent`` is cut to them in the enriched action
(with a warning giving its original length), a user agent outside printable
ASCII takes the Rust matcher too (see :func:`parse_user_agent`), and a major
version beyond ``MAX_VERSION_MAJOR`` (``Chrome/99999999999999999999``) is left
out of ``version_major`` with a warning while ``version`` keeps its text.

Fields added (each only when known; ``"Other"`` from the parser means unknown):

- ``browser``: ``name``, ``version`` (dotted, e.g. ``"120.0.0"``), ``version_major`` (int)
- ``os``: ``name``, ``version``, ``version_major``
- ``device``: ``type`` (``desktop``, ``mobile``, ``tablet``, ``bot`` or
  ``other``; always set), ``brand``, ``model``, ``name``

A missing, null or empty user agent gives ``device: {"type": "other"}`` only,
which is what parsing an empty string gives: every enriched event then has a
``device.type``. A user agent that is not a string adds nothing and is
reported as a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, Field

from pipeline.enrich.base import MetricSpec, Plugin, Warning, cache_metrics, object_schema, string_schema
from pipeline.enrich.cache import BoundedCache, strings_cost
from pipeline.enrich.useragent import (
    MAX_PARSED_CHARS,
    Notes,
    UserAgentFields,
    is_fast_parsable,
    load_user_agents,
    matchers,
    parse_user_agent,
    user_agent_fields,
)
from pipeline.settings_sources import Formerly

if TYPE_CHECKING:
    from pipeline.settings import Settings

__all__ = [
    "MAX_PARSED_CHARS",
    "BrowserEnrichment",
    "BrowserSettings",
    "is_fast_parsable",
    "load_user_agents",
    "parse_user_agent",
    "user_agent_fields",
]

#: Default byte bound of the parse cache.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: Bytes charged per cached entry beyond its strings (four dicts and a tuple).
_FIELDS_OVERHEAD = 1200


class BrowserSettings(BaseModel):
    """Settings of the browser enrichment."""

    cache_size: Annotated[int, Formerly("ua_cache_size")] = Field(
        10000, ge=0, description="User agents kept in the parse cache (LRU)."
    )
    cache_bytes: Annotated[int, Formerly("ua_cache_bytes")] = Field(
        DEFAULT_CACHE_BYTES,
        ge=0,
        description="Bytes the user-agent parse cache may hold (LRU; 0 = no cache).",
    )


def _major(description: str) -> dict[str, Any]:
    return {"description": description, "type": "integer", "minimum": 0}


#: The enriched action's ``$defs`` this enrichment writes.
SCHEMA: dict[str, Any] = {
    "browser": object_schema(
        "Browser parsed from http.useragent.",
        {
            "name": string_schema("Browser family, e.g. Chrome."),
            "version": string_schema("Full browser version, e.g. 120.0.6099."),
            "version_major": _major("Major browser version, e.g. 120."),
        },
    ),
    "os": object_schema(
        "Operating system parsed from http.useragent.",
        {
            "name": string_schema("Operating system family, e.g. Windows."),
            "version": string_schema("Full operating system version."),
            "version_major": _major("Major operating system version."),
        },
    ),
    "device": object_schema(
        "Device parsed from http.useragent.",
        {
            "type": {"description": "Device class.", "enum": ["desktop", "mobile", "tablet", "bot", "other"]},
            "brand": string_schema("Device brand, e.g. Apple."),
            "model": string_schema("Device model, e.g. iPhone."),
            "name": string_schema("Human-readable device name, e.g. Apple iPhone."),
        },
    ),
}


class BrowserEnrichment(Plugin):
    """Adds ``browser``, ``os`` and ``device`` parsed from ``http.useragent``.

    Results are cached by (at most ``MAX_PARSED_CHARS`` characters of)
    user-agent string in an LRU cache of at most ``cache_size`` entries and
    ``cache_bytes`` bytes (``ua_cache_size`` and ``ua_cache_bytes``; 0
    disables it); a cached result is copied into each event, so events never
    share or alter cached objects. When the event already has an object under
    one of these keys, the parsed fields are merged into it (ours win) so that
    producer-supplied extras stay.
    """

    name: ClassVar[str] = "browser"
    settings_model: ClassVar[type[BaseModel]] = BrowserSettings
    schema: ClassVar[Mapping[str, Any]] = SCHEMA
    metrics: ClassVar[tuple[MetricSpec, ...]] = cache_metrics("user_agent")

    def __init__(self, cache_size: int = 10000, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._cold_parses = 0
        self._slow_parses = 0
        self._failures = 0
        self._warnings = 0
        self._cache: BoundedCache[str, tuple[UserAgentFields, Notes]] = BoundedCache(cache_size, cache_bytes)
        matchers()  # pay the one-off build now rather than on the first event

    @classmethod
    def from_settings(cls, settings: Settings) -> BrowserEnrichment:
        """Build the enrichment with the cache sizes of ``enrich.browser``."""
        config = settings.section(BrowserSettings)
        return cls(cache_size=config.cache_size, cache_bytes=config.cache_bytes)

    def _lookup(self, ua: str) -> tuple[UserAgentFields, Notes]:
        found = self._cache.get(ua)
        if found is not None:
            return found
        self._cold_parses += 1
        if not is_fast_parsable(ua):
            self._slow_parses += 1
        notes: list[tuple[str, str]] = []
        result = (user_agent_fields(parse_user_agent(ua), notes), tuple(notes))
        strings = [ua, *(v for obj in result[0].values() for v in obj.values() if isinstance(v, str))]
        self._cache.put(ua, result, strings_cost(strings) + _FIELDS_OVERHEAD)
        return result

    def fields(self, ua: str) -> UserAgentFields:
        """Fresh (caller-owned) ``browser``/``os``/``device`` objects for ``ua``, through the cache."""
        return {key: dict(value) for key, value in self._lookup(ua[:MAX_PARSED_CHARS])[0].items()}

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        """Add ``browser``, ``os`` and ``device`` to ``event``; warn when the user agent is unusable."""
        http = event.get("http")
        ua: Any = None
        if isinstance(http, dict):
            ua = http.get("useragent")
        elif http is not None:
            self._warn(warnings, "http", f"expected an object, got {type(http).__name__}")
            return
        if ua is None:
            ua = ""
        elif not isinstance(ua, str):
            self._warn(warnings, "http.useragent", f"expected a string, got {type(ua).__name__}")
            return
        if len(ua) > MAX_PARSED_CHARS:
            # The enriched copy keeps what was parsed, as the url_* fields keep
            # what was read: a 30 KB user agent kept whole cost every copy
            # downstream (producer, broker, consumers) 30 KB for nothing a
            # parser reads. The raw topic keeps the original bytes.
            self._warn(
                warnings,
                "http.useragent",
                f"user agent is {len(ua)} characters; cut to the first {MAX_PARSED_CHARS}, which were parsed",
            )
            ua = ua[:MAX_PARSED_CHARS]
            event["http"]["useragent"] = ua  # a dict: the user agent was read from it
        try:
            parsed, notes = self._lookup(ua)
        except Exception as exc:
            # A parser bug must cost one event its fields, not stop the stream.
            self._failures += 1
            self._warn(warnings, "http.useragent", f"cannot parse user agent: {type(exc).__name__}")
            return
        for path, message in notes:
            self._warn(warnings, path, message)
        for key, value in parsed.items():
            existing = event.get(key)
            if isinstance(existing, dict):
                existing.update(value)
            else:
                event[key] = dict(value)

    def _warn(self, warnings: list[Warning], path: str, message: str) -> None:
        self._warnings += 1
        warnings.append({"enrichment": self.name, "path": path, "message": message})

    def stats(self) -> dict[str, float]:
        """Cache counters; cold parses (slow: outside printable ASCII); failures; warnings."""
        cache = self._cache
        return {
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "cache_size": len(cache),
            "cache_bytes": cache.bytes,
            "cold_parses": self._cold_parses,
            "slow_parses": self._slow_parses,
            "failures": self._failures,
            "warnings": self._warnings,
        }
