"""AggregationSet: parsing names, shared slots, results, merges and serialization."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rollups.aggregation_set import AggregationSet, parse_aggregation
from pipeline.rollups.aggregations import Avg, Count, Max, Min, Percentile, Sum, as_measure
from pipeline.rollups.attribute_aggregations import Cardinality

CHECKOUT = ["count", "sum", "avg", "min", "max", "p50", "p75", "p90", "p95", "p99", "cardinality(usr.id)"]


def checkout(value: Any, user: str = "u-1", **extra: Any) -> dict[str, Any]:
    return {"usr": {"id": user}, "context": {"value": value}, **extra}


def run(aggs: AggregationSet, events: list[dict[str, Any]]) -> dict[str, Any]:
    state = aggs.initialize()
    for event in events:
        aggs.add(state, event["context"]["value"], event)
    return state


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("count", Count),
        ("sum", Sum),
        ("avg", Avg),
        ("min", Min),
        ("max", Max),
        ("p50", Percentile),
        ("p99.9", Percentile),
        ("p0", Percentile),
        ("p100", Percentile),
        ("cardinality(usr.id)", Cardinality),
        ("cardinality(@usr.id)", Cardinality),
    ],
)
def test_parse_aggregation(name: str, kind: type) -> None:
    agg = parse_aggregation(name)
    assert isinstance(agg, kind) and agg.name == name


@pytest.mark.parametrize(
    "name", ["", "median", "p101", "p", "p-1", "P50", "cardinality()", "cardinality(a b)", "sum ", "Count"]
)
def test_parse_aggregation_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="unknown aggregation"):
        parse_aggregation(name)


def test_duplicates_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        AggregationSet(["count", "count"])


def test_checkout_example() -> None:
    aggs = AggregationSet(CHECKOUT)
    events = [
        checkout(42.12, "u-1"),
        checkout(10.0, "u-2"),
        checkout(7.88, "u-1"),
        checkout(None, "u-3"),  # no measure: counted, not measured
        checkout("12", "u-4"),  # not numeric
        checkout(True, "u-4"),  # bools are not numbers
    ]
    result = aggs.result(run(aggs, events))
    assert list(result) == CHECKOUT
    assert result["count"] == 6
    assert result["sum"] == pytest.approx(60.0)
    assert result["avg"] == pytest.approx(20.0)
    assert result["min"] == 7.88 and result["max"] == 42.12
    assert result["p50"] == pytest.approx(10.0, rel=0.01)
    assert result["p99"] == pytest.approx(10.0, rel=0.01)  # rank floor(0.99 * 2) = 1
    assert result["cardinality(usr.id)"] == 4


def test_empty_results() -> None:
    aggs = AggregationSet(CHECKOUT)
    result = aggs.result(aggs.initialize())
    expected: dict[str, Any] = {name: None for name in CHECKOUT}
    expected.update({"count": 0, "sum": 0.0, "cardinality(usr.id)": 0})
    assert result == expected
    only_missing = aggs.result(run(aggs, [checkout(None), checkout(None)]))
    assert only_missing["count"] == 2 and only_missing["avg"] is None and only_missing["sum"] == 0.0


def test_cardinality_counts_list_elements() -> None:
    aggs = AggregationSet(["count", "cardinality(context.items)"])
    state = aggs.initialize()
    aggs.add(state, None, {"context": {"items": ["tomato", "strawberries"]}})
    aggs.add(state, None, {"context": {"items": ["tomato", "kiwi", None]}})
    aggs.add(state, None, {"context": {}})
    assert aggs.result(state) == {"count": 3, "cardinality(context.items)": 3}


def test_percentiles_share_one_sketch() -> None:
    aggs = AggregationSet(["p50", "p90", "p99", "avg"])
    state = aggs.initialize()
    assert sorted(state) == ["count", "ddsketch", "sum"]
    assert "count" not in aggs.result(state)


measures = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6).filter(lambda v: v == 0 or abs(v) > 1e-6),
    st.integers(min_value=-10_000, max_value=10_000),
    st.none(),
    st.just("n/a"),
    st.booleans(),
)
events_st = st.lists(
    st.tuples(measures, st.sampled_from(["u1", "u2", "u3", 4, None, ["u1", "u9"]])), max_size=120
)


def to_events(raw: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    return [checkout(value, user) for value, user in raw]


@settings(max_examples=60, deadline=None)
@given(events_st, st.integers(min_value=1, max_value=5), st.randoms(use_true_random=False))
def test_merge_of_split_streams_equals_one_pass(raw: list[tuple[Any, Any]], n_parts: int, rnd: Any) -> None:
    aggs = AggregationSet(CHECKOUT)
    events = to_events(raw)
    whole = aggs.result(run(aggs, events))
    parts: list[list[dict[str, Any]]] = [[] for _ in range(n_parts)]
    for event in events:
        parts[rnd.randrange(n_parts)].append(event)
    states = [run(aggs, part) for part in parts]
    rnd.shuffle(states)
    merged = aggs.initialize()
    for state in states:
        aggs.merge(merged, state)
    got = aggs.result(merged)
    measured = sorted(v for v in (as_measure(e["context"]["value"]) for e in events) if v is not None)
    for name in ("count", "min", "max", "cardinality(usr.id)"):
        assert got[name] == whole[name], name
    if measured:
        assert got["sum"] == pytest.approx(math.fsum(measured), rel=1e-9, abs=1e-9)
        assert got["avg"] == pytest.approx(math.fsum(measured) / len(measured), rel=1e-9, abs=1e-9)
        for name in ("p50", "p75", "p90", "p95", "p99"):
            q = float(name[1:]) / 100
            truth = measured[math.floor(q * (len(measured) - 1))]
            assert abs(got[name] - truth) <= 0.01 * abs(truth) * (1 + 1e-9), name
            assert got[name] == whole[name]  # bins merge exactly
    else:
        assert got["avg"] is None and got["p50"] is None


@settings(max_examples=40, deadline=None)
@given(events_st)
def test_dump_load_round_trip(raw: list[tuple[Any, Any]]) -> None:
    aggs = AggregationSet(CHECKOUT)
    state = run(aggs, to_events(raw))
    data = orjson.loads(orjson.dumps(aggs.dump(state)))
    restored = aggs.load(data)
    assert aggs.result(restored) == aggs.result(state)
    assert aggs.dump(restored) == aggs.dump(state)
    assert aggs.sketches(restored) == aggs.sketches(state)


def test_dump_and_sketches_shape() -> None:
    aggs = AggregationSet(CHECKOUT)
    state = run(aggs, [checkout(42.12, "u-7")])
    dumped = aggs.dump(state)
    assert set(dumped) == {"count", "sum", "min", "max", "ddsketch", "hll"}
    assert dumped["sum"] == {"n": 1, "sum": 42.12, "comp": 0.0}
    assert set(dumped["hll"]) == {"usr.id"} and isinstance(dumped["hll"]["usr.id"], str)
    sketches = aggs.sketches(state)
    assert set(sketches) == {"ddsketch", "hll"}
    assert sketches["ddsketch"]["type"] == "ddsketch"
    assert AggregationSet(["count", "sum"]).sketches(AggregationSet(["count", "sum"]).initialize()) == {}


def test_merge_does_not_change_the_other_state() -> None:
    aggs = AggregationSet(CHECKOUT)
    a = run(aggs, [checkout(1.0, "a")])
    b = run(aggs, [checkout(2.0, "b")])
    before = aggs.dump(b)
    aggs.merge(a, b)
    assert aggs.dump(b) == before
    assert aggs.result(a)["count"] == 2


def test_shared_instances() -> None:
    assert AggregationSet.of(("count", "sum")) is AggregationSet.of(("count", "sum"))


FACET_EVENTS = st.lists(
    st.one_of(
        st.none(),
        st.sampled_from(["a", "b", 1, 2.5, True, "1"]),
        st.lists(st.sampled_from(["a", "b", "a", 7, None]), max_size=4),
        st.fixed_dictionaries({"k": st.integers(0, 2)}),
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(FACET_EVENTS, st.integers(min_value=1, max_value=4), st.randoms(use_true_random=False))
def test_value_counts_split_merge_and_round_trip(raw: list[Any], n_parts: int, rnd: Any) -> None:
    """A facet window's value counts: one count per distinct value an event carries."""
    aggs = AggregationSet(("count", "values(context.tag)"))
    events: list[dict[str, Any]] = [
        {"context": {"tag": value}} if value is not None else {"context": {}} for value in raw
    ]
    truth: dict[Any, int] = {}
    for value in raw:
        found = value if isinstance(value, list) else [value]
        keys = [
            orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode() if isinstance(v, dict) else v for v in found
        ]
        for key in dict.fromkeys(k for k in keys if k is not None):
            truth[key] = truth.get(key, 0) + 1
    parts: list[list[dict[str, Any]]] = [[] for _ in range(n_parts)]
    for event in events:
        parts[rnd.randrange(n_parts)].append(event)
    one_by_one = [aggs.initialize() for _ in parts]
    for state, part in zip(one_by_one, parts, strict=True):
        for event in part:
            aggs.add(state, None, event)
    batched = [aggs.add_many(aggs.initialize(), None, part) for part in parts]
    assert [s["values"] for s in batched] == [s["values"] for s in one_by_one]
    merged = aggs.merge_all(batched)
    assert merged["values"] == truth and merged["count"] == len(events)
    assert aggs.result(merged)["values(context.tag)"] == len(truth)
    restored = aggs.load(orjson.loads(orjson.dumps(aggs.dump(merged))))
    assert restored["values"] == truth
