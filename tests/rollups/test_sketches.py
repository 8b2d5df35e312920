"""Quantile (DDSketch) and cardinality (HLL) sketches: accuracy, merges, portable forms."""

from __future__ import annotations

import base64
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rollups.sketches import (
    BIN_LIMIT,
    RELATIVE_ACCURACY,
    CardinalitySketch,
    QuantileSketch,
    bin_value,
    canonical_item,
)

QUANTILES = [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]

# Magnitudes kept inside what 2048 bins cover at 1%, so no collapsing happens.
values_st = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-6, max_value=1e9),
    st.floats(min_value=-1e9, max_value=-1e-6),
)


def sketch_of(values: list[float]) -> QuantileSketch:
    sketch = QuantileSketch()
    for v in values:
        sketch.add(v)
    return sketch


def true_quantile(values: list[float], q: float) -> float:
    """The value DDSketch estimates: the one at rank floor(q * (n - 1))."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_within_accuracy(estimate: float | None, truth: float) -> None:
    assert estimate is not None
    assert abs(estimate - truth) <= RELATIVE_ACCURACY * abs(truth) * (1 + 1e-9), (estimate, truth)


def test_empty_sketch() -> None:
    sketch = QuantileSketch()
    assert sketch.count == 0
    assert sketch.quantile(0.5) is None
    data = sketch.to_dict()
    assert data["min"] is None and data["max"] is None
    assert data["positive"] == {"offset": 0, "counts": [], "collapsed": False}
    assert QuantileSketch.from_dict(data).quantile(0.5) is None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([0.0, 0.0, 0.0], 0.5, 0.0),
        ([-3.0, 0.0, 3.0], 0.5, 0.0),
        ([-3.0, 0.0, 3.0], 0.0, -3.0),
        ([-3.0, 0.0, 3.0], 1.0, 3.0),
        (list(range(1, 101)), 0.5, 50.0),
        (list(range(1, 101)), 0.99, 99.0),
    ],
)
def test_quantile_table(values: list[float], q: float, expected: float) -> None:
    assert_within_accuracy(sketch_of([float(v) for v in values]).quantile(q), expected)


def test_min_and_max_quantiles_are_exact() -> None:
    sketch = sketch_of([1.234, 99.87, 42.12])
    assert sketch.quantile(0.0) == 1.234
    assert sketch.quantile(1.0) == 99.87


def test_rejects_non_finite() -> None:
    with pytest.raises(ValueError):
        QuantileSketch().add(math.nan)
    with pytest.raises(ValueError):
        QuantileSketch().add(math.inf)


@settings(max_examples=60, deadline=None)
@given(st.lists(values_st, min_size=1, max_size=300))
def test_quantiles_within_relative_accuracy(values: list[float]) -> None:
    sketch = sketch_of(values)
    assert sketch.count == len(values)
    for q in QUANTILES:
        assert_within_accuracy(sketch.quantile(q), true_quantile(values, q))


@settings(max_examples=60, deadline=None)
@given(st.lists(values_st, max_size=300))
def test_round_trip_is_exact(values: list[float]) -> None:
    sketch = sketch_of(values)
    data = sketch.to_dict()
    for restored in (
        QuantileSketch.from_dict(orjson.loads(orjson.dumps(data))),
        QuantileSketch.from_bytes(sketch.to_bytes()),
        QuantileSketch.from_base64(sketch.to_base64()),
    ):
        assert restored.to_dict() == data
        assert [restored.quantile(q) for q in QUANTILES] == [sketch.quantile(q) for q in QUANTILES]
    # A restored sketch keeps working like the original.
    restored = QuantileSketch.from_dict(data)
    for v in (1e-3, 7.5, -2.0, 0.0, 1e8):
        restored.add(v)
        sketch.add(v)
    assert restored.to_dict() == sketch.to_dict()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(values_st, max_size=200), st.lists(values_st, max_size=200), st.lists(values_st, max_size=200)
)
def test_merge_commutative_and_associative(a: list[float], b: list[float], c: list[float]) -> None:
    ab_c = sketch_of(a)
    ab_c.merge(sketch_of(b))
    ab_c.merge(sketch_of(c))
    bc = sketch_of(b)
    bc.merge(sketch_of(c))
    a_bc = sketch_of(a)
    a_bc.merge(bc)
    c_ba = sketch_of(c)
    c_ba.merge(sketch_of(b))
    c_ba.merge(sketch_of(a))
    whole = sketch_of(a + b + c)
    expected = whole.to_dict()
    for merged in (ab_c, a_bc, c_ba):
        got = merged.to_dict()
        # Bins, counts, min and max are exact; the plain float sum only within rounding.
        assert math.isclose(got.pop("sum"), expected["sum"], rel_tol=1e-9, abs_tol=1e-6)
        assert got == {k: v for k, v in expected.items() if k != "sum"}
        assert [merged.quantile(q) for q in QUANTILES] == [whole.quantile(q) for q in QUANTILES]


def test_merge_leaves_other_unchanged() -> None:
    a, b = sketch_of([1.0, 2.0]), sketch_of([3.0])
    before = b.to_dict()
    a.merge(b)
    assert b.to_dict() == before
    empty = QuantileSketch()
    empty.merge(a)
    a.add(100.0)
    assert empty.count == 3  # the copy made by merging into an empty sketch is not shared


def test_format_is_compact_and_documented() -> None:
    sketch = sketch_of([1.0, 1.0, 2.0, -5.0, 0.0])
    data = sketch.to_dict()
    assert set(data) == {
        "type", "mapping", "relative_accuracy", "gamma", "index_offset", "bin_limit",
        "positive", "negative", "zero_count", "count", "sum", "min", "max",
    }  # fmt: skip
    assert data["type"] == "ddsketch" and data["relative_accuracy"] == 0.01
    assert data["gamma"] == pytest.approx(1.01 / 0.99)
    assert data["zero_count"] == 1 and data["count"] == 5
    assert data["negative"]["counts"] == [1]
    # Bin key of v is ceil(log_gamma(v)); contiguous bins 1.0 .. 2.0 with zeros between.
    gamma = data["gamma"]
    assert data["positive"]["offset"] == math.ceil(math.log(1.0) / math.log(gamma))
    assert data["positive"]["counts"][0] == 2 and data["positive"]["counts"][-1] == 1
    assert len(data["positive"]["counts"]) == math.ceil(math.log(2.0) / math.log(gamma)) + 1
    assert all(isinstance(c, int) for c in data["positive"]["counts"])


def test_weighted_counts_of_a_foreign_sketch_are_written_as_they_are() -> None:
    data = sketch_of([1.0, 1.0, 3.0]).to_dict()
    counts = data["positive"]["counts"]
    counts[0] = 1.5  # weighted sketches (other libraries) count in fractions
    data["count"] = 2.5
    written = QuantileSketch.from_dict(data).to_dict()["positive"]["counts"]
    assert written[0] == 1.5 and isinstance(written[0], float)
    assert written[-1] == 1 and isinstance(written[-1], int)  # the integral counts stay integers
    assert written == counts


def test_from_dict_rejects_foreign_parameters() -> None:
    data = sketch_of([1.0]).to_dict()
    with pytest.raises(ValueError):
        QuantileSketch.from_dict({**data, "gamma": 1.05})
    with pytest.raises(ValueError):
        QuantileSketch.from_dict({**data, "type": "tdigest"})
    with pytest.raises(ValueError):
        QuantileSketch.from_dict({**data, "count": 2})


def test_bin_limit_bounds_size_and_keeps_high_quantiles() -> None:
    # 1e-30 .. 1e30 needs ~6900 bins at 1%: the lowest ones collapse.
    values = [10.0**e for e in range(-30, 31)] * 3
    sketch = sketch_of(values)
    data = sketch.to_dict()
    assert len(data["positive"]["counts"]) <= BIN_LIMIT
    assert data["positive"]["collapsed"] is True
    for q in (0.9, 0.99, 1.0):
        assert_within_accuracy(sketch.quantile(q), true_quantile(values, q))
    assert QuantileSketch.from_dict(data).to_dict() == data


# --- cardinality -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "item"),
    [
        ("u-7", '"u-7"'),
        ("1", '"1"'),
        (1, "1"),
        (1.0, "1"),
        (1.5, "1.5"),
        (-0.0, "0"),
        (True, "true"),
        (False, "false"),
        ("true", '"true"'),
        ("é", '"é"'),
        (None, None),
        (math.nan, None),
        (math.inf, None),
        ({"a": 1}, None),
        ([1], None),
    ],
)
def test_canonical_item(value: object, item: str | None) -> None:
    assert canonical_item(value) == item


def test_types_stay_distinct() -> None:
    sketch = CardinalitySketch()
    for value in (1, "1", 1.0, True, "true"):
        sketch.add(value)
    assert round(sketch.estimate()) == 4  # 1 and 1.0 are one JSON number


@pytest.mark.parametrize("n", [0, 1, 10, 100, 1_000, 10_000, 50_000])
def test_estimate_within_three_standard_deviations(n: int) -> None:
    sketch = CardinalitySketch()
    for i in range(n):
        sketch.add(f"user-{i}")
    for i in range(n):  # duplicates change nothing
        sketch.add(f"user-{i}")
    assert abs(sketch.estimate() - n) <= sketch.relative_error(3) * n
    low, high = sketch.bounds(3)
    assert low <= n <= high


def test_relative_error_is_documented_figure() -> None:
    sketch = CardinalitySketch()
    assert sketch.lg_k == 12
    assert sketch.relative_error(1) == pytest.approx(1.04 / math.sqrt(4096), rel=0.05)
    assert sketch.relative_error(3) == pytest.approx(3 * sketch.relative_error(1), rel=0.05)
    with pytest.raises(ValueError):
        sketch.relative_error(4)


def test_merge_of_split_streams() -> None:
    rng = random.Random(7)
    users = [f"u{rng.randrange(30_000)}" for _ in range(60_000)]
    truth = len(set(users))
    parts = [CardinalitySketch() for _ in range(4)]
    for i, user in enumerate(users):
        parts[i % 4].add(user)
    merged = CardinalitySketch()
    for part in parts:
        merged.merge(part)
    reversed_merge = CardinalitySketch()
    for part in reversed(parts):
        reversed_merge.merge(part)
    assert abs(merged.estimate() - truth) <= merged.relative_error(3) * truth
    assert merged.estimate() == pytest.approx(reversed_merge.estimate(), rel=1e-9)
    assert merged.to_bytes() == reversed_merge.to_bytes()


def test_hll_round_trip_is_standard_datasketches_image() -> None:
    sketch = CardinalitySketch()
    for i in range(5_000):
        sketch.add(i)
    raw = sketch.to_bytes()
    # DataSketches HLL preamble: family id 7 at byte 2, lg_k at byte 3.
    assert raw[2] == 7 and raw[3] == 12
    assert CardinalitySketch.from_bytes(raw).estimate() == sketch.estimate()
    text = sketch.to_base64()
    assert base64.b64decode(text) == raw
    restored = CardinalitySketch.from_base64(text)
    restored.add("one more")
    assert restored.estimate() > sketch.estimate()
    assert CardinalitySketch().is_empty() and len(CardinalitySketch().to_bytes()) == 8


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(values_st, st.floats(min_value=1e-300, max_value=1e300)), max_size=300),
    st.lists(st.floats(min_value=-0.5, max_value=1.5), min_size=1, max_size=8),
    st.booleans(),
)
def test_quantiles_at_once_equal_one_by_one(values: list[float], qs: list[float], restored: bool) -> None:
    sketch = sketch_of(values)
    if restored:  # bins laid out by from_dict rather than by the library's own adds
        sketch = QuantileSketch.from_dict(sketch.to_dict())
    assert sketch.quantiles(qs + QUANTILES) == [sketch.quantile(q) for q in qs + QUANTILES]


_MAGNITUDES = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    before=st.lists(_MAGNITUDES, max_size=5),
    values=st.lists(
        st.one_of(_MAGNITUDES, st.sampled_from([0.0, -0.0, 5e-324, -1e-310, 1.0, 2.5])), max_size=60
    ),
)
def test_add_many_equals_adding_each_value(before: list[float], values: list[float]) -> None:
    one_by_one, at_once = QuantileSketch(), QuantileSketch()
    for value in before:
        one_by_one.add(value)
        at_once.add(value)
    for value in values:
        one_by_one.add(value)
    at_once.add_many(values)
    assert at_once.to_dict() == one_by_one.to_dict()


def test_a_collapsed_store_read_back_keeps_every_count_of_later_values() -> None:
    value = bin_value
    data = QuantileSketch().to_dict()
    data.update(
        positive={"offset": 100, "counts": [1, 1], "collapsed": True},
        count=2,
        sum=value(100) + value(101),
        min=value(100),
        max=value(101),
    )
    restored = QuantileSketch.from_dict(data)  # two bins kept, not the 2048 the store may hold
    restored.add(value(110))  # grows and re-centres the store
    restored.add(value(50))  # below the kept range: counts in its lowest bin
    again = QuantileSketch.from_dict(restored.to_dict())  # every count kept in the serialised form
    assert again.count == 4
    assert again.to_dict()["positive"]["counts"][0] == 2


def test_add_many_over_a_range_wider_than_the_bins_keeps_every_count_and_the_top() -> None:
    rng = random.Random(4)
    values = [10.0 ** rng.uniform(-200, 200) for _ in range(3000)]
    one_by_one, at_once = QuantileSketch(), QuantileSketch()
    for value in values:
        one_by_one.add(value)
    at_once.add_many(values)
    data = at_once.to_dict()
    assert data["positive"]["collapsed"]
    assert sum(data["positive"]["counts"]) == data["count"] == 3000
    assert at_once.quantile(0.99) == one_by_one.quantile(0.99)
    assert at_once.quantile(1.0) == max(values)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_add_many_rejects_what_add_rejects_and_changes_nothing(bad: float) -> None:
    sketch = QuantileSketch()
    sketch.add(3.0)
    before = sketch.to_dict()
    with pytest.raises(ValueError, match="finite"):
        sketch.add_many([1.0, bad, 2.0])
    assert sketch.to_dict() == before


# --- exit: no sketch alive when the extension goes ----------------------------------------

# A worker's shape at exit: the app and its engine, made before the collector is tuned (and
# frozen), hold each other in a cycle, and the engine holds the rollup states; a daemon thread
# (the metrics server's) may still run.
_WORKER_EXIT = """
import gc, sys, threading
from pipeline.cli import tune_garbage_collector
from pipeline.rollups.aggregation_set import AggregationSet

class App:
    def __init__(self):
        self.engine = Engine(self)

class Engine:
    def __init__(self, app):
        self.app = app
        self.states = {}

engine = App().engine
FREEZE
aggs = AggregationSet(["count", "p95", "cardinality(usr.id)"])
for i in range(40):
    a, b = aggs.initialize(), aggs.initialize()
    aggs.add_many(a, [float(i), 2.5], [{"usr": {"id": f"u{i}"}}, {"usr": {"id": "u0"}}])
    aggs.add_many(b, [7.0], [{"usr": {"id": "v"}}])
    engine.states[i] = aggs.merge_all([a, aggs.merge(a, b)])
print(sum(round(s["hll:usr.id"].estimate()) for s in engine.states.values()))
HOLD
del engine
"""
# A daemon thread still running at exit keeps its frame, and all it refers to, to the very end.
_DAEMON_HOLDS = (
    "threading.Thread(target=lambda held: threading.Event().wait(), args=(engine,), daemon=True).start()"
)


def _run_exit_script(freeze: str, hold: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    script = _WORKER_EXIT.replace("FREEZE", freeze).replace("HOLD", hold)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("hold", ["", _DAEMON_HOLDS])
def test_a_worker_shaped_process_exits_without_leaked_sketches(hold: str) -> None:
    done = _run_exit_script("tune_garbage_collector((200000, 10, 1000))", hold)  # what the worker does
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 2 + 39 * 3  # made and merged: {u0, v}, then {u<i>, u0, v} each
    assert "leaked" not in done.stderr, done.stderr[:2000]


def test_without_the_exit_hook_the_sketches_still_alive_are_reported() -> None:
    # The cause, shown: what a daemon thread (or a frozen object, or a library's class-level
    # registry) refers to is still alive when the extension goes, and each sketch is reported.
    unhooked = "import atexit, pipeline.rollups.sketches as s; atexit.unregister(s.release_native_sketches)"
    done = _run_exit_script(unhooked, _DAEMON_HOLDS)
    assert done.returncode == 0, done.stderr
    assert "leaked" in done.stderr and "hll_sketch" in done.stderr


# --- the published form stays what it was ------------------------------------------------

_GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "sketches" / "ddsketch-v1.json"


@pytest.mark.parametrize("case", ["cart_values", "signed_with_zeros", "collapsed", "empty"])
def test_sketches_written_before_read_and_write_the_same(case: str) -> None:
    # Written by the earlier implementation (on the ddsketch package's stores), as on the topics.
    golden = orjson.loads(_GOLDEN.read_bytes())
    qs, written = golden["quantiles"], golden["cases"][case]
    restored = QuantileSketch.from_dict(written["sketch"])
    assert restored.to_dict() == written["sketch"]
    assert [restored.quantile(q) for q in qs] == written["estimates"]
    fresh = QuantileSketch()
    fresh.add_many(written["values"])
    assert fresh.to_bytes() == orjson.dumps(written["sketch"])  # byte for byte the same form
    restored.merge(fresh)
    assert restored.count == 2 * len(written["values"])
