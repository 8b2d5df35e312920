"""The measure aggregations: which values count, and a compensated sum that stays exact."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from pipeline.rollups.aggregations import Sum, as_measure


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1.0), (2.5, 2.5), (-3, -3.0), (True, None), (False, None), ("4", None), (None, None),
     (math.nan, None), (math.inf, None), ([1], None)],
)  # fmt: skip
def test_as_measure(value: Any, expected: float | None) -> None:
    assert as_measure(value) == expected


def test_sum_is_accurate_over_200k_values() -> None:
    rng = random.Random(42)
    # Mixed magnitudes and signs: the worst case for a naive float sum.
    values = [rng.choice([1e8, 1.0, 1e-6, -1e8]) * rng.random() for _ in range(200_000)]
    truth = math.fsum(values)
    agg = Sum("sum")
    state = agg.initialize()
    for v in values:
        state = agg.add(state, v)
    assert agg.result(state) == pytest.approx(truth, rel=1e-12)
    # Split into 7 streams merged in two different orders.
    parts = [agg.initialize() for _ in range(7)]
    for i, v in enumerate(values):
        parts[i % 7] = agg.add(parts[i % 7], v)
    forward, backward = agg.initialize(), agg.initialize()
    for part in parts:
        forward = agg.merge(forward, part)
    for part in reversed(parts):
        backward = agg.merge(backward, part)
    assert agg.result(forward) == pytest.approx(truth, rel=1e-9)
    assert agg.result(backward) == pytest.approx(truth, rel=1e-9)
    assert forward[0] == backward[0] == 200_000
