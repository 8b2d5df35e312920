"""Merging published sketches: the fast bin-by-bin path equals the library's merge."""

from __future__ import annotations

import random

import pytest

from pipeline.rollups.sketches import QuantileSketch
from pipeline.view.merge import _merge_slowly, merge_ddsketches


def sketch(rng: random.Random, n: int, spread: float) -> dict:
    s = QuantileSketch()
    s.add_many([rng.choice((-1, 1, 1, 1)) * rng.lognormvariate(2, spread) for _ in range(n)] + [0.0])
    return s.to_dict()


@pytest.mark.parametrize("spread", [0.3, 2.0])
def test_fast_merge_equals_the_library_merge(spread: float) -> None:
    rng = random.Random(int(spread * 10))
    parts = [sketch(rng, rng.randint(1, 40), spread) for _ in range(30)] + [QuantileSketch().to_dict()]
    fast, slow = merge_ddsketches(parts).to_dict(), _merge_slowly(parts).to_dict()
    assert fast.pop("sum") == pytest.approx(slow.pop("sum"), rel=1e-12)
    assert fast == slow
    qs = [0.01, 0.25, 0.5, 0.9, 0.99]
    assert merge_ddsketches(parts).quantiles(qs) == _merge_slowly(parts).quantiles(qs)


def test_stores_wider_than_the_bin_limit_collapse_as_the_library_does() -> None:
    low, high = QuantileSketch(), QuantileSketch()
    low.add_many([1e-12, 2e-12])
    high.add_many([1e12, 3e12])
    parts = [low.to_dict(), high.to_dict()]
    merged = merge_ddsketches(parts)
    assert merged.to_dict()["positive"]["collapsed"]
    assert merged.to_dict() == _merge_slowly(parts).to_dict()
    assert merged.count == 4
