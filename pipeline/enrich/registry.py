"""The registry: every enrichment, in run order. Registering one is one line of ``ENRICHMENTS``.

From the classes listed here come the enrichments a processor runs, the
enrichment settings folded into :class:`pipeline.settings.Settings`, the
``$defs`` of the enriched action's schema and the enrichment metrics. Nothing
here runs per action: the processor holds the built enrichments in a list.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from pipeline.enrich.base import Enrichment, MetricSpec, Plugin
from pipeline.enrich.browser import BrowserEnrichment
from pipeline.enrich.context import GlobalContextEnrichment
from pipeline.enrich.geo import GeoEnrichment
from pipeline.enrich.ip import IpPolicyEnrichment
from pipeline.enrich.page import PageEnrichment
from pipeline.enrich.referrer import ReferrerEnrichment

if TYPE_CHECKING:
    from pipeline.settings import Settings

#: Run order matters: the IP policy runs after geo, which needs the full address.
ENRICHMENTS: tuple[type[Plugin], ...] = (
    GlobalContextEnrichment,
    PageEnrichment,
    GeoEnrichment,
    IpPolicyEnrichment,
    BrowserEnrichment,
    ReferrerEnrichment,
)


def build_enrichments(settings: Settings) -> list[Enrichment]:
    """Every registered enrichment, built from the settings, in run order."""
    return [cast(Enrichment, cls.from_settings(settings)) for cls in ENRICHMENTS]


def settings_models() -> list[type[BaseModel]]:
    """The distinct settings models of the registered enrichments, in run order."""
    models: list[type[BaseModel]] = []
    for cls in ENRICHMENTS:
        if cls.settings_model not in models:
            models.append(cls.settings_model)
    return models


def schema_defs() -> dict[str, Any]:
    """The enriched action's ``$defs``: each enrichment's entries, those of one name merged.

    Two enrichments may describe the same object (``view``): their
    ``properties`` are joined, and a property both describe is an error, as is
    any other keyword they give different values.
    """
    defs: dict[str, Any] = {}
    for cls in ENRICHMENTS:
        for name, fragment in cls.schema.items():
            if name not in defs:
                defs[name] = copy.deepcopy(dict(fragment))
                continue
            merged = defs[name]
            for key, value in fragment.items():
                if key == "properties":
                    taken = set(merged.setdefault("properties", {})) & set(value)
                    if taken:
                        where = f"{cls.__name__}: $defs/{name}"
                        raise ValueError(f"{where} properties {sorted(taken)} described twice")
                    merged["properties"].update(copy.deepcopy(dict(value)))
                elif merged.setdefault(key, value) != value:
                    raise ValueError(f"{cls.__name__}: $defs/{name} gives another {key!r}")
    return defs


def metric_specs(enrichments: Iterable[Any]) -> Iterator[tuple[Any, MetricSpec]]:
    """Each built enrichment with each metric its class declares (none for an unregistered one)."""
    for enrichment in enrichments:
        for spec in getattr(type(enrichment), "metrics", ()):
            yield enrichment, spec


async def start_all(enrichments: Iterable[Any]) -> None:
    """Run each enrichment's ``start`` hook, when it has one."""
    for enrichment in enrichments:
        start = getattr(enrichment, "start", None)
        if start is not None:
            await start()


async def stop_all(enrichments: Iterable[Any]) -> None:
    """Run each enrichment's ``stop`` hook, when it has one, in reverse order."""
    for enrichment in reversed(list(enrichments)):
        stop = getattr(enrichment, "stop", None)
        if stop is not None:
            await stop()


#: Name -> class, in run order.
REGISTRY: dict[str, type[Plugin]] = {cls.name: cls for cls in ENRICHMENTS}
