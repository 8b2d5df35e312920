"""Queries over a view filled with worker-made records, against truth computed from the events."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import orjson
import pytest

from pipeline.rollups.sketches import CardinalitySketch
from pipeline.schemas import FACET_INDEX, MEASURE_ROLLUP, validate_record
from pipeline.view.query import run_facet_query, run_query
from pipeline.view.request import Limits, RollupInfo, parse_facet_query, parse_query
from pipeline.view.store import ViewStore, entry_of, numeric_count, sketches_text
from tests.view.records import CART, facet_record, late_record, rollup_record

M, H, D = 60_000, 3_600_000, 86_400_000
DAY0 = 1_764_288_000_000  # 2025-11-28T00:00:00Z
NOW = DAY0 + 2 * D
INFO = RollupInfo("cart", (60, 3600, 86400), ("geo.country",), CART)
CATALOG = {"cart": INFO}
COUNTRIES = ["France", "Germany", "Spain"]

Event = tuple[int, str, Any, str, bool]  # date, country, value, user, late for its minute


def make_events(seed: int, n: int = 6000) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        date = DAY0 + rng.randrange(0, 2 * D)
        value: Any = round(rng.lognormvariate(3.5, 0.8), 2) if rng.random() > 0.1 else None
        events.append((date, rng.choice(COUNTRIES), value, f"u{rng.randrange(800)}", rng.random() < 0.02))
    return events


def fill(store: ViewStore, events: list[Event], open_after: int | None = None) -> None:
    """The records the workers would publish: late events are missing from their 1m window."""
    windows: dict[tuple[int, int, str], list[tuple[Any, str]]] = defaultdict(list)
    late: dict[int, int] = defaultdict(int)
    for date, country, value, user, is_late in events:
        for size in (60, 3600, 86400):
            start = date - date % (size * 1000)
            if size == 60 and is_late:
                late[start] += 1
                continue
            windows[(size, start, country)].append((value, user))
    for (size, start, country), rows in windows.items():
        final = open_after is None or start + size * 1000 <= open_after
        record = rollup_record("cart", size, start, {"geo.country": country}, rows, final=final)
        assert not validate_record(MEASURE_ROLLUP, record)
        store.apply_rollup(None, orjson.dumps(record))
    for start, count in late.items():
        store.apply_rollup(None, orjson.dumps(late_record("cart", 60, start, count)))


def truth(events: list[Event], start: int, end: int, minute_spans: list[tuple[int, int]]) -> dict:
    """Per country: what the windows hold (late events missing only where 1m windows are used)."""
    out: dict[str, dict[str, Any]] = {}
    late = 0
    for date, country, value, user, is_late in events:
        if not start <= date < end:
            continue
        if is_late and any(a <= date < b for a, b in minute_spans):
            late += 1
            continue
        row = out.setdefault(country, {"count": 0, "values": [], "users": set()})
        row["count"] += 1
        row["users"].add(user)
        if value is not None:
            row["values"].append(value)
    return {"groups": out, "late": late}


def check_group(values: dict[str, Any], expected: dict[str, Any]) -> None:
    nums = sorted(expected["values"])
    assert values["count"] == expected["count"]
    assert values["sum"] == pytest.approx(math.fsum(nums), rel=1e-12)
    assert values["avg"] == pytest.approx(math.fsum(nums) / len(nums), rel=1e-9)
    assert (values["min"], values["max"]) == (nums[0], nums[-1])
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        rank = q * (len(nums) - 1)
        near = {nums[math.floor(rank)], nums[math.ceil(rank)]}
        assert any(abs(values[name] - v) <= 0.01 * v for v in near), (name, values[name], near)
    exact = len(expected["users"])
    sigma = CardinalitySketch().relative_error(1) * exact
    assert abs(values["cardinality(usr.id)"] - exact) <= 3 * sigma + 1


def test_rolling_day_from_an_arbitrary_minute_equals_truth() -> None:
    events = make_events(1)
    store = ViewStore()
    fill(store, events)
    start = DAY0 + 13 * H + 37 * M
    query = parse_query(
        {"rollup": "cart", "from": str(start), "to": str(start + D)}, [], CATALOG, NOW, Limits()
    )
    answer = run_query(store, query, Limits())
    expected = truth(events, start, start + D, [(start, DAY0 + 14 * H), (DAY0 + D + 13 * H, start + D)])
    assert answer["windows"] == {"1h": 23, "1m": 60}
    assert answer["late"] == expected["late"] > 0
    assert answer["final"] and not answer["approximations"]
    got = {g["group"]["geo.country"]: g["values"] for g in answer["groups"]}
    assert set(got) == set(expected["groups"])
    for country, values in got.items():
        check_group(values, expected["groups"][country])


def test_avg_divides_by_numeric_values_not_count() -> None:
    store = ViewStore()
    rows = [(10.0, "a"), (None, "b"), (20.0, "c"), ("n/a", "d")]
    store.apply_rollup_record(rollup_record("cart", 60, DAY0, {"geo.country": "France"}, rows))
    store.apply_rollup_record(rollup_record("cart", 60, DAY0 + M, {"geo.country": "France"}, [(60.0, "a")]))
    query = parse_query(
        {"rollup": "cart", "from": str(DAY0), "to": str(DAY0 + 2 * M)}, [], CATALOG, NOW, Limits()
    )
    values = run_query(store, query, Limits())["groups"][0]["values"]
    assert values["count"] == 5
    assert values["avg"] == 30.0  # (10 + 20 + 60) / 3, where sum/count would give 18
    assert values["cardinality(usr.id)"] == pytest.approx(4, abs=0.01)


def test_numeric_count_without_a_sketch_comes_from_sum_and_avg() -> None:
    record = rollup_record(
        "r", 60, DAY0, {}, [(1.5, None), (None, None), (2.25, None)], ("count", "sum", "avg")
    )
    assert "ddsketch" not in record["sketches"] and record["aggregations"]["count"] == 3
    assert numeric_count(record) == 2


def test_where_every_and_top() -> None:
    events = make_events(2)
    store = ViewStore()
    fill(store, events)
    params = {"rollup": "cart", "from": str(DAY0 + 6 * H), "to": str(DAY0 + 12 * H), "agg": "count,avg"}
    query = parse_query({**params, "every": "1h"}, ["geo.country:France"], CATALOG, NOW, Limits())
    answer = run_query(store, query, Limits())
    assert [g["group"] for g in answer["groups"]] == [{"geo.country": "France"}]
    assert len(answer["series"]) == 6 and answer["windows"] == {"1h": 6}
    for point in answer["series"]:
        expected = truth(events, point["from_ms"], point["to_ms"], [])["groups"]["France"]
        assert point["groups"][0]["values"]["count"] == expected["count"]
        assert point["groups"][0]["values"]["avg"] == pytest.approx(
            math.fsum(expected["values"]) / len(expected["values"]), rel=1e-9
        )
    ranked = run_query(
        store, parse_query({**params, "top": "2", "by": "count"}, [], CATALOG, NOW, Limits()), Limits()
    )
    whole = truth(events, DAY0 + 6 * H, DAY0 + 12 * H, [])["groups"]
    best = sorted(whole, key=lambda c: -whole[c]["count"])[:2]
    assert [g["group"]["geo.country"] for g in ranked["groups"]] == best
    assert ranked["groups_total"] == 3
    negated = parse_query(params, ["-geo.country:France"], CATALOG, NOW, Limits())
    assert {g["group"]["geo.country"] for g in run_query(store, negated, Limits())["groups"]} == {
        "Germany",
        "Spain",
    }


def test_open_windows_and_widened_ranges_are_reported() -> None:
    events = make_events(3, 2000)
    store = ViewStore()
    fill(store, events, open_after=DAY0 + D + 20 * H)
    query = parse_query(
        {"rollup": "cart", "from": str(DAY0 + D + 19 * H + 30_000), "to": str(DAY0 + D + 21 * H)},
        [],
        CATALOG,
        NOW,
        Limits(),
    )
    answer = run_query(store, query, Limits())
    assert not answer["final"] and answer["open_windows"] >= 1
    assert any("widened" in note for note in answer["approximations"])
    assert answer["from"] == "2025-11-29T19:00:00Z"


def test_tombstones_and_retention_drop_keys() -> None:
    store = ViewStore(retention_ms=D)
    old = rollup_record("cart", 60, DAY0, {"geo.country": "France"}, [(1.0, "a")])
    new = rollup_record("cart", 60, DAY0 + 3 * D, {"geo.country": "France"}, [(2.0, "a")])
    store.apply_rollup_record(old)
    store.apply_rollup_record(new)
    assert store.keys == 2
    assert store.evict() == 1 and store.keys == 1
    key = orjson.dumps(
        {"rollup": "cart", "interval": "1m", "window_start": DAY0 + 3 * D, "group": {"geo.country": "France"}}
    )
    store.apply_rollup(key, None)
    assert store.keys == 0 and not store.rollup_window("cart", 60, DAY0 + 3 * D)


def test_facets_sum_counts_over_windows_and_rank_values() -> None:
    store = ViewStore()
    rng = random.Random(4)
    expected: dict[str, int] = defaultdict(int)
    for hour in range(48):
        for value in ("tomato", "basil", "strawberries", "pasta"):
            count = rng.randrange(0, 30)
            if not count:
                continue
            record = facet_record("context.items", value, 3600, DAY0 + hour * H, count)
            assert not validate_record(FACET_INDEX, record)
            store.apply_facet(None, orjson.dumps(record))
            if 30 <= hour < 40:
                expected[value] += count
    query = parse_facet_query(
        "context.items",
        {"from": str(DAY0 + 30 * H), "to": str(DAY0 + 40 * H), "top": "3"},
        ["context.items"],
        NOW,
        Limits(),
    )
    answer = run_facet_query(store, query)
    best = sorted(expected.items(), key=lambda kv: (-kv[1], repr(kv[0])))
    assert [(v["value"], v["count"]) for v in answer["values"]] == best[:3]
    assert answer["unique_values"] == len(expected) and answer["total"] == sum(expected.values())
    assert answer["windows"] == {"1h": 10}


def test_sketches_cut_from_the_record_equal_the_object() -> None:
    record = rollup_record(
        "cart", 60, DAY0, {"geo.country": "France", "sketches": None}, [(1.5, "a"), (2.0, "b")]
    )
    raw = orjson.dumps(record)
    assert orjson.loads(sketches_text(raw) or b"") == record["sketches"]
    assert entry_of(orjson.loads(raw), raw).sketches == sketches_text(raw)
    # Another key order, or a group path named like the field: not cut, encoded again.
    moved = orjson.dumps({"final": True, **{k: v for k, v in record.items() if k != "final"}})
    assert sketches_text(moved) is None
    assert orjson.loads(entry_of(orjson.loads(moved), moved).sketches or b"") == record["sketches"]
    tricky = orjson.dumps({**record, "group": {"a": "x", "sketches": "y"}})
    assert orjson.loads(sketches_text(tricky) or b"") == record["sketches"]


def test_a_window_without_records_is_open_until_its_grace_has_passed() -> None:
    store = ViewStore()
    store.apply_rollup_record(rollup_record("cart", 60, DAY0, {"geo.country": "France"}, [(1.0, "a")]))
    params = {"rollup": "cart", "from": str(DAY0), "to": str(DAY0 + 3 * M)}
    # Asked at DAY0 + 3m30s: the third minute ended 30 s ago, within the 60 s grace.
    soon = run_query(store, parse_query(params, [], CATALOG, DAY0 + 3 * M + 30_000, Limits()), Limits())
    assert not soon["final"] and soon["open_windows"] == 1
    later = run_query(store, parse_query(params, [], CATALOG, DAY0 + 10 * M, Limits()), Limits())
    assert later["final"] and later["open_windows"] == 0
