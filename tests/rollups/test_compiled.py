"""Compiled rollups: filter, measure, groups (one per list element), facet rollups and paths read."""

from __future__ import annotations

from typing import Any

from pipeline.query.paths import MISSING
from pipeline.rollups.compiled import (
    DEFAULT_FACET_INTERVALS,
    FACET_PREFIX,
    LATE_SUFFIX,
    CompiledRollup,
    compile_rollups,
    is_facet,
)
from pipeline.rollups.config import parse_rollup_config
from tests.factory import raw_action

CONFIG = parse_rollup_config(
    {
        "facets": ["action.target.name", "context.items"],
        "measures": [{"path": "context.value", "unit": "EUR"}],
        "rollups": [
            {
                "name": "cart_value_by_country",
                "filter": "@action.target.name:checkout",
                "measure": "context.value",
                "group_by": ["geo.country"],
                "aggregations": ["count", "sum", "cardinality(usr.id)"],
                "intervals": ["1m", "1h"],
            },
            {
                "name": "items_by_country_and_name",
                "group_by": ["geo.country", "context.items"],
                "aggregations": ["count"],
                "intervals": ["1d"],
            },
            {"name": "everything", "aggregations": ["count"], "intervals": ["1h"]},
        ],
    }
)
ROLLUPS = {rollup.name: rollup for rollup in compile_rollups(CONFIG)}


def action(name: str = "checkout", **context: Any) -> dict[str, Any]:
    """The typical action named ``name``, as enrichment leaves it (from France)."""
    event = raw_action(context={"value": 42.12, **context}, usr={"id": "u-1"})
    event["action"]["target"]["name"] = name
    return event | {"geo": {"country": "France"}}


def test_one_compiled_rollup_per_rollup_then_one_per_facet() -> None:
    assert list(ROLLUPS) == [
        "cart_value_by_country",
        "items_by_country_and_name",
        "everything",
        FACET_PREFIX + "action.target.name",
        FACET_PREFIX + "context.items",
    ]


def test_filter_measure_and_intervals() -> None:
    cart = ROLLUPS["cart_value_by_country"]
    assert cart.intervals == (60, 3600)
    assert not cart.always
    events = [action(), action("add_to_cart"), {}]
    assert cart.select(events) == [True, False, False]
    assert [cart.matches(e) for e in events] == [True, False, False]  # one at a time agrees with the batch
    assert cart.measure is not None and cart.measure(action()) == 42.12
    assert cart.measure_many is not None and cart.measure_many(events) == [42.12, 42.12, MISSING]
    assert cart.measure({}) is MISSING  # absent, told apart from a null value


def test_paths_list_everything_the_rollup_reads() -> None:
    assert set(ROLLUPS["cart_value_by_country"].paths) == {
        "action.target.name",
        "context.value",
        "geo.country",
        "usr.id",
    }
    assert ROLLUPS["everything"].paths == ()


def test_a_rollup_without_filter_selects_everything() -> None:
    everything = ROLLUPS["everything"]
    assert everything.always and everything.select([{}, action()]) == [True, True]
    assert everything.group_keys(action()) == [()]
    assert everything.measure is None


def test_group_keys_of_a_scalar_attribute() -> None:
    assert ROLLUPS["cart_value_by_country"].group_keys(action()) == [(("geo.country", "France"),)]


def test_an_event_without_the_group_attribute_is_grouped_under_null() -> None:
    assert ROLLUPS["cart_value_by_country"].group_keys({}) == [(("geo.country", None),)]


def test_a_list_attribute_gives_one_group_per_distinct_element_in_order() -> None:
    rollup = CompiledRollup(
        name="by_item",
        matches=lambda event: True,
        measure=None,
        groups=(("context.items", lambda event: event["context"]["items"]),),
        intervals=(60,),
        aggregations=ROLLUPS["everything"].aggregations,
        paths=("context.items",),
    )
    event = {"context": {"items": ["tomato", "strawberries", "tomato", {"b": 1, "a": 2}]}}
    assert rollup.group_keys(event) == [
        (("context.items", "tomato"),),
        (("context.items", "strawberries"),),
        (("context.items", '{"a":2,"b":1}'),),  # objects group by their JSON text
    ]
    assert rollup.group_keys({"context": {"items": []}}) == [(("context.items", None),)]


def test_two_group_attributes_give_their_cartesian_product() -> None:
    rollup = ROLLUPS["items_by_country_and_name"]
    event = action(items=["tomato", "pear", "tomato"])
    assert rollup.group_keys(event) == [
        (("geo.country", "France"), ("context.items", "tomato")),
        (("geo.country", "France"), ("context.items", "pear")),
    ]
    assert rollup.group_keys({"context": {"items": ["pear"]}}) == [
        (("geo.country", None), ("context.items", "pear"))
    ]


def test_facet_rollups_count_values_per_hour_and_day() -> None:
    facet = ROLLUPS[FACET_PREFIX + "context.items"]
    assert facet.intervals == DEFAULT_FACET_INTERVALS == (3600, 86400)
    assert facet.always and facet.groups == () and facet.measure is None
    assert facet.aggregations.paths == ("context.items",)
    assert facet.paths == ("context.items",)


def test_is_facet_tells_facet_rollups_from_their_late_counts_and_from_rollups() -> None:
    assert is_facet(FACET_PREFIX + "geo.country")
    assert not is_facet(FACET_PREFIX + "geo.country" + LATE_SUFFIX)
    assert not is_facet("cart_value_by_country")
