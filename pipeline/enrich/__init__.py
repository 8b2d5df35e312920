"""Enrichments: each one a module with a class, registered here in run order.

Adding an enrichment = its module + one line in ``REGISTRY`` + its tests.
Order matters: the IP policy runs after geo, which needs the full address.
"""

from __future__ import annotations

from pipeline.enrich.base import Enrichment
from pipeline.enrich.browser import BrowserEnrichment
from pipeline.enrich.context import GlobalContextEnrichment
from pipeline.enrich.geo import GeoEnrichment
from pipeline.enrich.ip import IpPolicyEnrichment
from pipeline.enrich.page import PageEnrichment
from pipeline.settings import Settings

REGISTRY: dict[str, type[Enrichment]] = {
    GlobalContextEnrichment.name: GlobalContextEnrichment,
    PageEnrichment.name: PageEnrichment,
    GeoEnrichment.name: GeoEnrichment,
    IpPolicyEnrichment.name: IpPolicyEnrichment,
    BrowserEnrichment.name: BrowserEnrichment,
}


def build_enrichments(settings: Settings) -> list[Enrichment]:
    """Every registered enrichment, built from the settings, in run order."""
    return [cls.from_settings(settings) for cls in REGISTRY.values()]


__all__ = ["REGISTRY", "Enrichment", "build_enrichments"]
