"""Measure-rollup and facet-index records made the way the workers make them, for view tests."""

from __future__ import annotations

from typing import Any

from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.windows import SECOND_MS, format_interval

CART = ("count", "sum", "avg", "min", "max", "p50", "p95", "p99", "cardinality(usr.id)")


def rollup_record(
    rollup: str,
    interval_s: int,
    start: int,
    group: dict[str, Any],
    events: list[tuple[Any, str | None]],
    aggregations: tuple[str, ...] = CART,
    final: bool = True,
) -> dict[str, Any]:
    """The record of one window and group over ``events`` = [(measure value, user id)]."""
    aggs = AggregationSet.of(aggregations)
    state = aggs.initialize()
    for value, user in events:
        aggs.add(state, value, {"usr": {"id": user}} if user else {})
    return {
        "rollup": rollup,
        "interval": format_interval(interval_s),
        "window_start": start,
        "window_end": start + interval_s * SECOND_MS,
        "group": group,
        "aggregations": aggs.result(state),
        "sketches": aggs.sketches(state),
        "final": final,
        "updated_at": start + interval_s * SECOND_MS,
    }


def late_record(rollup: str, interval_s: int, start: int, count: int) -> dict[str, Any]:
    """A ``<rollup>:late`` record counting ``count`` late actions of one window."""
    return rollup_record(f"{rollup}:late", interval_s, start, {}, [(None, None)] * count, ("count",))


def facet_record(facet: str, value: Any, interval_s: int, start: int, count: int, final: bool = True) -> dict:
    """A facet-index value record."""
    return {
        "kind": "value",
        "facet": facet,
        "value": value,
        "interval": format_interval(interval_s),
        "window_start": start,
        "window_end": start + interval_s * SECOND_MS,
        "count": count,
        "final": final,
        "updated_at": start,
    }
