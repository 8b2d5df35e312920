"""The downstream side: a live view of the rollup and facet topics, and queries over it.

Importable by any consumer::

    store = ViewStore(retention_ms=8 * 86_400_000)
    await load_view(settings, store, timeout=60)          # or ViewReader(...).run() to stay live
    query = parse_query({"rollup": "cart_value_by_country", "last": "1d", "agg": "avg"},
                        ["geo.country:France"], catalog_of(config), now_ms, Limits())
    answer = run_query(store, query, Limits())

The store and the queries know nothing of Kafka; only :mod:`pipeline.view.reader` does.
"""

from pipeline.view.merge import merge_ddsketches, merge_entries
from pipeline.view.query import run_facet_query, run_query
from pipeline.view.ranges import Cover, Window, cover
from pipeline.view.request import (
    FacetQuery,
    Limits,
    Query,
    QueryError,
    RollupInfo,
    catalog_of,
    parse_facet_query,
    parse_query,
)
from pipeline.view.store import Entry, ViewStore, numeric_count

__all__ = [
    "Cover",
    "Entry",
    "FacetQuery",
    "Limits",
    "Query",
    "QueryError",
    "RollupInfo",
    "ViewStore",
    "Window",
    "catalog_of",
    "cover",
    "merge_ddsketches",
    "merge_entries",
    "numeric_count",
    "parse_facet_query",
    "parse_query",
    "run_facet_query",
    "run_query",
]
