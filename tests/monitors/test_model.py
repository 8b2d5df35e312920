"""The monitor model: evaluation windows, thresholds and query as events carry them, groups."""

from __future__ import annotations

from pipeline.monitors.model import (
    BREACHES,
    OVERALL,
    Monitor,
    Status,
    group_event,
    group_from_object,
    group_object,
)
from pipeline.query.filter import parse_filter

MINUTE = 60_000
FRANCE = (("geo.country", "France"),)


def monitor(**changes: object) -> Monitor:
    fields: dict[str, object] = {
        "name": "cart_value_high",
        "rollup": "cart_value_by_country",
        "aggregation": "avg",
        "comparator": ">",
        "alert": 200.0,
        "window_ms": 15 * MINUTE,
        "group_by": ("geo.country",),
    }
    return Monitor(**{**fields, **changes})  # type: ignore[arg-type]


def test_the_window_ends_on_a_step_and_after_the_delay() -> None:
    now = 1_764_340_123_456
    end = now // MINUTE * MINUTE
    assert monitor().evaluation_range(now) == (end - 15 * MINUTE, end)
    assert monitor().evaluation_range(end) == (end - 15 * MINUTE, end)  # on a step: that step
    delayed = monitor(delay_ms=2 * MINUTE, step_ms=5 * MINUTE)
    start, stop = delayed.evaluation_range(now)
    assert stop % (5 * MINUTE) == 0 and stop <= now - 2 * MINUTE < stop + 5 * MINUTE
    assert stop - start == 15 * MINUTE


def test_thresholds_carry_only_those_set() -> None:
    assert monitor().thresholds() == {"comparator": ">", "alert": 200.0}
    full = monitor(warn=150.0, alert_recovery=180.0, warn_recovery=0.0)
    assert full.thresholds() == {
        "comparator": ">",
        "alert": 200.0,
        "warn": 150.0,
        "alert_recovery": 180.0,
        "warn_recovery": 0.0,  # zero is a threshold, not an unset one
    }


def test_query_names_rollup_aggregation_filter_and_grouping() -> None:
    narrowed = monitor(filter=parse_filter("@geo.country:France"), multi=False)
    assert narrowed.query() == {
        "rollup": "cart_value_by_country",
        "aggregation": "avg",
        "filter": "@geo.country:France",
        "multi": False,
    }


def test_a_multi_monitor_accepts_groups_of_its_shape_that_its_filter_keeps() -> None:
    narrowed = monitor(filter=parse_filter("-@geo.country:Spain"))
    assert narrowed.accepts(FRANCE)
    assert not narrowed.accepts((("geo.country", "Spain"),))
    assert not narrowed.accepts(OVERALL)  # a state restored from an overall monitor
    assert not narrowed.accepts((("browser.name", "Chrome"),))  # or from another group_by


def test_an_overall_monitor_accepts_only_the_overall_group() -> None:
    overall = monitor(multi=False)
    assert overall.accepts(OVERALL) and not overall.accepts(FRANCE)


def test_groups_as_objects_events_and_back() -> None:
    group = (("geo.country", "France"), ("geo.city", "Paris"), ("browser.name", None))
    assert group_object(group) == {"geo.country": "France", "geo.city": "Paris", "browser.name": None}
    assert group_event(group) == {"geo": {"country": "France", "city": "Paris"}, "browser": {"name": None}}
    order = ("geo.country", "geo.city", "browser.name")
    shuffled = {"browser.name": None, "geo.city": "Paris", "geo.country": "France"}
    assert group_from_object(shuffled, order) == group
    assert group_from_object({"x": 1, "geo.city": "Paris"}, order) == (("geo.city", "Paris"), ("x", 1))
    assert group_event(OVERALL) == {} and group_object(OVERALL) == {}


def test_comparators_and_statuses() -> None:
    assert [BREACHES[c](2.0, 2.0) for c in (">", ">=", "<", "<=")] == [False, True, False, True]
    assert [BREACHES[c](3.0, 2.0) for c in (">", ">=", "<", "<=")] == [True, True, False, False]
    assert Status("NO_DATA") is Status.NO_DATA and str(Status.WARN) == "WARN"
