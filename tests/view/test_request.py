"""Bad queries are refused with the parameter at fault named."""

from __future__ import annotations

import pytest

from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.view.request import Limits, QueryError, catalog_of, parse_query

D = 86_400_000
NOW = 1_764_288_000_000 + 12 * 3_600_000
CATALOG = catalog_of(load_rollup_config(default_config_path()))


def refused(
    params: dict[str, str], where: list[str] | None = None, limits: Limits | None = None
) -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse_query(
            {"rollup": "cart_value_by_country", **params}, where or [], CATALOG, NOW, limits or Limits()
        )
    return caught.value


@pytest.mark.parametrize(
    ("params", "where", "param", "words"),
    [
        (
            {"rollup": "nope"},
            [],
            "rollup",
            "unknown rollup 'nope' (known: actions_by_name, cart_value_by_country)",
        ),
        ({"agg": "avg,p42"}, [], "agg", "p42 is not kept"),
        ({"from": str(NOW), "to": str(NOW - 60_000)}, [], "from", "must be before"),
        ({"from": "last tuesday"}, [], "from", "neither epoch milliseconds nor ISO 8601"),
        ({"last": "1y"}, [], "last", "invalid span"),
        ({"last": "1d", "from": "0"}, [], "last", "not both"),
        ({"from": str(NOW - 30 * D), "to": str(NOW - 29 * D)}, [], "to", "retention"),
        ({"last": "30d"}, [], "last", "longer than the limit"),
        ({"last": "7d", "every": "1m"}, [], "every", "more than the limit of 1440"),
        ({"every": "30s"}, [], "every", "multiple of the rollup's smallest interval 1m"),
        ({"every": "7m"}, [], "every", "invalid span"),
        ({"top": "0"}, [], "top", "not a positive whole number"),
        ({"top": "5", "by": "p99x"}, [], "by", "not one of the aggregations"),
        ({}, ["geo.country:(France"], "where", "where"),
        ({}, ["browser.name:Chrome"], "where", "browser.name is not a group of this rollup"),
    ],
)
def test_bad_input_names_the_parameter(params: dict, where: list[str], param: str, words: str) -> None:
    error = refused(params, where)
    assert error.param == param
    assert words in str(error)


def test_a_range_partly_past_retention_is_clipped_and_noted() -> None:
    limits = Limits(retention_ms=2 * D)
    query = parse_query({"rollup": "cart_value_by_country", "last": "7d"}, [], CATALOG, NOW, limits)
    assert query.start == NOW - 2 * D and query.end == NOW
    assert "before the retention" in query.notes[0]


def test_defaults() -> None:
    query = parse_query({"rollup": "cart_value_by_country"}, [], CATALOG, NOW, Limits())
    assert (query.start, query.end) == (NOW - D, NOW)
    assert query.aggregations[0] == "count" and "p99" in query.aggregations
    top = parse_query(
        {"rollup": "cart_value_by_country", "agg": "avg,count", "top": "3"}, [], CATALOG, NOW, Limits()
    )
    assert top.by == "avg"
    assert parse_query(
        {"rollup": "cart_value_by_country"}, ["@geo.country:France"], CATALOG, NOW, Limits()
    ).where


@pytest.mark.parametrize(
    ("where", "matching"),
    [
        (["-geo.country:France"], {"Spain", "United Kingdom"}),
        (['geo.country:"United Kingdom"'], {"United Kingdom"}),
        (["@geo.country:France OR geo.country:Spain"], {"France", "Spain"}),
        (["geo.country:Fr*", "-geo.country:Spain"], {"France"}),
    ],
)
def test_where_forms(where: list[str], matching: set[str]) -> None:
    found = parse_query({"rollup": "cart_value_by_country"}, where, CATALOG, NOW, Limits()).where
    assert found is not None
    countries = {"France", "Spain", "United Kingdom"}
    assert {c for c in countries if found.matches({"geo": {"country": c}})} == matching
