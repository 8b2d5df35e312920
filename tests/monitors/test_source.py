"""The Source of serve: a monitor's values equal the query API's answer for the same range and groups."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipeline.monitors.model import Monitor
from pipeline.monitors.source import ViewSource
from pipeline.query.filter import parse_filter
from pipeline.view.catalog import Catalog
from pipeline.view.query import run_query
from pipeline.view.request import Limits, RollupInfo, parse_query
from pipeline.view.store import ViewStore
from tests.view.records import CART, rollup_record

M, H = 60_000, 3_600_000
DAY0 = 1_764_288_000_000
INFO = RollupInfo("cart", (60, 3600, 86400), ("geo.country",), CART)
CATALOG = Catalog({"cart": INFO}, ())
COUNTRIES = ("France", "Germany", "Spain", "Italy")


def filled() -> ViewStore:
    """Two hours and a half of 1m windows, and the 1h windows made of them, for four countries."""
    rng = random.Random(5)
    store = ViewStore()
    hourly: dict[tuple[str, int], list[tuple[Any, str]]] = {}
    for minute in range(150):
        start = DAY0 + minute * M
        for country in COUNTRIES:
            if rng.random() < 0.2:
                continue  # some minutes without this country
            rows = [(round(rng.lognormvariate(3.5, 0.8), 2), f"u{rng.randrange(50)}") for _ in range(3)]
            store.apply_rollup_record(rollup_record("cart", 60, start, {"geo.country": country}, rows))
            hourly.setdefault((country, start - start % H), []).extend(rows)
    for (country, hour), rows in hourly.items():
        if hour + H <= DAY0 + 150 * M:
            store.apply_rollup_record(rollup_record("cart", 3600, hour, {"geo.country": country}, rows))
    return store


def monitor(**changes: Any) -> Monitor:
    fields: dict[str, Any] = {
        "name": "m",
        "rollup": "cart",
        "aggregation": "avg",
        "comparator": ">",
        "alert": 100.0,
        "window_ms": 90 * M,
        "group_by": ("geo.country",),
        **changes,
    }
    return Monitor(**fields)


def answer(store: ViewStore, start: int, end: int, agg: str, where: list[str]) -> dict[str, Any]:
    query = parse_query(
        {"rollup": "cart", "from": str(start), "to": str(end), "agg": agg},
        where,
        CATALOG.rollups,
        end,
        Limits(),
    )
    return run_query(store, query, Limits())


@pytest.mark.parametrize("agg", ["avg", "count", "max", "p95", "cardinality(usr.id)"])
def test_per_group_values_equal_the_query_answer(agg: str) -> None:
    store = filled()
    source = ViewSource(store, CATALOG)
    start, end = DAY0 + 37 * M, DAY0 + 127 * M  # 1m windows at both edges of a whole hour
    values = source.values(monitor(aggregation=agg), start, end)
    expected = {
        (("geo.country", g["group"]["geo.country"]),): g["values"][agg]
        for g in answer(store, start, end, agg, [])["groups"]
    }
    assert set(values) == set(expected) and len(values) == len(COUNTRIES)
    for group, value in expected.items():
        assert values[group] == pytest.approx(value, rel=1e-12), group


def test_a_filter_keeps_its_groups_and_overall_merges_them() -> None:
    store = filled()
    source = ViewSource(store, CATALOG)
    start, end = DAY0 + 60 * M, DAY0 + 120 * M
    kept = parse_filter("-@geo.country:France")
    per_group = source.values(monitor(filter=kept), start, end)
    assert {g[0][1] for g in per_group} == {"Germany", "Spain", "Italy"}
    overall = source.values(monitor(filter=kept, multi=False, aggregation="p95"), start, end)
    expected = answer(store, start, end, "p95", ["-geo.country:France"])
    # The query API answers per group; merged over the kept groups, one value.
    query_all = [g["values"]["p95"] for g in expected["groups"]]
    assert list(overall) == [()] and min(query_all) <= overall[()] <= max(query_all)
    count = source.values(monitor(filter=kept, multi=False, aggregation="count"), start, end)
    assert count[()] == sum(g["values"]["count"] for g in answer(store, start, end, "count", [])["groups"]
                            if g["group"]["geo.country"] != "France")  # fmt: skip


def test_a_range_without_data_has_no_values() -> None:
    source = ViewSource(filled(), CATALOG)
    start, end = DAY0 + 10 * H, DAY0 + 11 * H
    assert source.values(monitor(), start, end) == {}
    assert source.values(monitor(multi=False), start, end) == {(): None}


def test_a_new_cycle_reads_the_view_again() -> None:
    store = ViewStore()
    source = ViewSource(store, CATALOG)
    m = monitor(window_ms=5 * M)
    assert source.values(m, DAY0, DAY0 + 5 * M) == {}
    store.apply_rollup_record(rollup_record("cart", 60, DAY0, {"geo.country": "France"}, [(150.0, "u")]))
    assert source.values(m, DAY0, DAY0 + 5 * M) == {}  # same cycle: what was read stays
    source.new_cycle()
    assert source.values(m, DAY0, DAY0 + 5 * M) == {(("geo.country", "France"),): 150.0}
