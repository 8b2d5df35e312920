"""Enrichments: each one a module with a class, registered in run order in :mod:`.registry`.

Adding an enrichment = its module + one line in ``registry.ENRICHMENTS`` + its tests.
"""

from __future__ import annotations

from pipeline.enrich.base import Enrichment
from pipeline.enrich.registry import REGISTRY, build_enrichments

__all__ = ["REGISTRY", "Enrichment", "build_enrichments"]
