"""The project's DDSketch against the ``ddsketch`` package, through that package's public API only."""

from __future__ import annotations

import math
import sys

from ddsketch import LogarithmicMapping, LogCollapsingLowestDenseDDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rollups.quantiles import (
    BIN_LIMIT,
    GAMMA,
    MIN_INDEXABLE,
    RELATIVE_ACCURACY,
    QuantileSketch,
    bin_key,
    bin_value,
)

PACKAGE_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)

MAGNITUDES = st.floats(min_value=5e-324, max_value=sys.float_info.max, allow_nan=False, allow_infinity=False)
# Every kind of value: signs, zeros, subnormals, magnitudes from 1e-300 to 1e300 (so stores collapse).
VALUES = st.one_of(
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, 5e-324, -2.2e-308, 1.0, 42.12]),
)
# Values whose magnitudes fit in the bins (no collapsing): merges are then exact in any order.
NARROW = st.one_of(
    st.just(0.0), st.floats(min_value=1e-6, max_value=1e9), st.floats(min_value=-1e9, max_value=-1e-6)
)


def package_sketch(values: list[float]) -> LogCollapsingLowestDenseDDSketch:
    sketch = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, BIN_LIMIT)
    for value in values:
        sketch.add(value)
    return sketch


def own_sketch(values: list[float]) -> QuantileSketch:
    sketch = QuantileSketch()
    sketch.add_many(values)
    return sketch


def assert_same_quantiles(
    own: QuantileSketch, package: LogCollapsingLowestDenseDDSketch, low: float, high: float
) -> None:
    """Equal at every rank and a few qs between; the package's estimate clamped to [min, max] as ours is."""
    n = own.count
    assert n == package.count
    qs = [rank / (n - 1) for rank in range(n)] if n > 1 else [0.0, 1.0]
    qs += [0.001, 0.25, 0.333, 0.5, 0.95, 0.99, 0.999]
    expected = []
    for q in qs:
        value = package.get_quantile_value(q)
        expected.append(None if value is None else float(min(max(value, low), high)))
    assert own.quantiles(qs) == expected
    assert [own.quantile(q) for q in qs] == expected


def test_mapping_constants_are_the_package_ones() -> None:
    assert PACKAGE_MAPPING.gamma == GAMMA
    assert PACKAGE_MAPPING.min_possible == MIN_INDEXABLE


@settings(max_examples=500, deadline=None)
@given(MAGNITUDES)
def test_bin_keys_are_the_package_ones(magnitude: float) -> None:
    if magnitude > MIN_INDEXABLE:
        assert bin_key(magnitude) == PACKAGE_MAPPING.key(magnitude)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-36_000, max_value=36_000))
def test_bin_values_are_the_package_ones_and_stay_in_their_bin(key: int) -> None:
    value = bin_value(key)
    try:
        expected = PACKAGE_MAPPING.value(key)
    except OverflowError:  # the top bin: the package has no value there, ours is the largest float
        assert value == sys.float_info.max and key >= bin_key(sys.float_info.max / GAMMA)
        return
    assert value == expected
    if value > MIN_INDEXABLE:
        assert bin_key(value) == key  # what a consumer rebuilding a sketch from bins relies on


def test_the_largest_floats_have_quantiles() -> None:
    values = [sys.float_info.max, 1e308, -sys.float_info.max, 1.7e308]
    sketch = own_sketch(values)
    low, middle, high = sketch.quantiles([0.0, 0.5, 1.0])
    assert (low, high) == (-sys.float_info.max, sys.float_info.max)
    assert middle is not None and abs(middle - 1e308) <= RELATIVE_ACCURACY * 1e308
    restored = QuantileSketch.from_bytes(sketch.to_bytes())  # the sum overflowed: written as null
    assert math.isnan(restored.sum)
    assert restored.quantiles([0.0, 0.5, 1.0]) == [low, middle, high]


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=200))
def test_quantiles_at_every_rank_equal_the_package(values: list[float]) -> None:
    own = own_sketch(values)
    package = package_sketch(values)
    assert_same_quantiles(own, package, min(values), max(values))
    assert own.sum == package.sum
    stores = own.to_dict()
    assert len(stores["positive"]["counts"]) <= BIN_LIMIT and len(stores["negative"]["counts"]) <= BIN_LIMIT


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES, max_size=120), st.lists(VALUES, max_size=120), st.booleans())
def test_a_merge_equals_the_package_merge(a: list[float], b: list[float], restored: bool) -> None:
    own, other = own_sketch(a), own_sketch(b)
    if restored:  # as the merge stage does: sketches read back from records
        own, other = QuantileSketch.from_dict(own.to_dict()), QuantileSketch.from_dict(other.to_dict())
    own.merge(other)
    package = package_sketch(a)
    package.merge(package_sketch(b))
    if a or b:
        assert_same_quantiles(own, package, min(a + b), max(a + b))
    else:
        assert own.quantile(0.5) is None and package.get_quantile_value(0.5) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(NARROW, max_size=60), min_size=1, max_size=6))
def test_merging_many_equals_the_package_and_one_sketch_of_everything(parts: list[list[float]]) -> None:
    everything = [value for part in parts for value in part]
    merged = QuantileSketch()
    package = package_sketch([])
    for part in parts:
        merged.merge(QuantileSketch.from_bytes(own_sketch(part).to_bytes()))
        package.merge(package_sketch(part))
    if everything:
        assert_same_quantiles(merged, package, min(everything), max(everything))
    whole = own_sketch(everything).to_dict()
    got = merged.to_dict()
    assert math.isclose(got.pop("sum"), whole.pop("sum"), rel_tol=1e-9, abs_tol=1e-6)
    assert got == whole


def test_a_collapsed_merge_stays_marked_collapsed_in_either_order() -> None:
    wide = [10.0**e for e in range(-200, 201, 10)]  # ~45,000 bins' worth: collapses
    narrow = [1.0, 2.0, 3.0]
    for first, second in ((wide, narrow), (narrow, wide)):
        merged = own_sketch(first)
        merged.merge(own_sketch(second))
        assert merged.to_dict()["positive"]["collapsed"] is True
        assert merged.count == len(wide) + len(narrow)
        assert merged.quantile(1.0) == 1e200


def test_store_edges_read_from_elsewhere_are_trimmed() -> None:
    data = own_sketch([1.0, 2.0]).to_dict()
    positive = data["positive"]
    padded = [0, 0, *positive["counts"], 0]
    data["positive"] = {**positive, "offset": positive["offset"] - 2, "counts": padded}
    assert QuantileSketch.from_dict(data).to_dict() == own_sketch([1.0, 2.0]).to_dict()
