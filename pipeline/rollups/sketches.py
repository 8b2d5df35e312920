"""Mergeable sketches for rollups: DDSketch quantiles and HyperLogLog unique counts.

Rollup records carry these sketches so that consumers in any language can merge
windows and groups themselves. The serialized forms below are a public contract
(docs/sketches.md shows how to merge them with the plain ``ddsketch`` and
``datasketches`` packages; ``pipeline.rollups.portable`` does it in a few lines).

Quantile sketch (DDSketch), ``QuantileSketch.to_dict()``::

    {"type": "ddsketch", "mapping": "logarithmic",
     "relative_accuracy": 0.01, "gamma": 1.02020202020202, "index_offset": 0.0,
     "bin_limit": 2048,
     "positive": {"offset": 112, "counts": [3, 0, 1, ...], "collapsed": false},
     "negative": {"offset": 0, "counts": [], "collapsed": false},
     "zero_count": 0, "count": 4, "sum": 12.5, "min": 0.5, "max": 9.0}

- ``gamma = (1 + relative_accuracy) / (1 - relative_accuracy)``.
- A value ``v > 0`` goes to the positive bin ``k = ceil(log(v) / log(gamma) + index_offset)``;
  ``v < 0`` goes to the negative bin of ``-v``; values whose magnitude is below the
  smallest normal float times gamma count in ``zero_count``.
- ``counts[i]`` is the count of bin ``offset + i``; bins are contiguous, so a store
  is just its first key and a list (zero bins inside the range are written as 0).
- The representative value of bin ``k`` is ``2 * gamma ** (k - index_offset) / (1 + gamma)``,
  within ``relative_accuracy`` of every value in the bin. This is the layout of
  DataDog's sketches-go/-java/-py ``LogarithmicMapping`` + dense stores, so their
  protobuf form can be converted to and from this one field by field.
- Two sketches merge by adding counts bin by bin; they must have equal ``gamma``
  and ``index_offset``.
- ``bin_limit``: each store keeps at most 2048 bins. At 1% accuracy that covers a
  ratio of about 6e17 between the smallest and largest magnitude of one sign
  (e.g. 1e-9 to 6e8). Beyond it the *lowest* bins are folded into the lowest kept
  bin (``"collapsed": true``): low quantiles of such data lose their accuracy
  guarantee (they are over-estimated), high quantiles keep it, and the memory and
  record size stay bounded whatever the input. A merge with a collapsed store
  gives a collapsed store.
- ``count``, ``sum``, ``min`` and ``max`` are exact summaries of the values added;
  ``min``/``max`` are ``null`` for an empty sketch; ``sum`` is ``null`` when it
  overflowed the float range. Counts are integers.

``to_bytes()`` is the orjson encoding of that dict; ``to_base64()`` its base64 text.

``QuantileSketch`` is the project's own small DDSketch (``pipeline.rollups.quantiles``),
with the bins, keys and quantiles of the ``ddsketch`` package's
``LogCollapsingLowestDenseDDSketch(0.01, 2048)``.

Cardinality sketch (HyperLogLog), ``CardinalitySketch.to_bytes()``: the standard
Apache DataSketches HLL compact binary image (lg_k = 12, HLL_8), readable by
DataSketches in Java, C++, Python, Go and Rust (``HllSketch.heapify`` /
``hll_sketch::deserialize``); in JSON records it is written as standard base64.
The item hashed for a value is the UTF-8 text of ``canonical_item(value)``
(see there), so consumers that add their own values must encode them the same way.
"""

from __future__ import annotations

import atexit
import base64
import gc
import math
from collections.abc import Iterable
from typing import Any

import orjson
from datasketches import hll_sketch, hll_union, tgt_hll_type

from pipeline.rollups.quantiles import BIN_LIMIT, GAMMA, RELATIVE_ACCURACY, QuantileSketch, bin_key, bin_value

__all__ = [
    "BIN_LIMIT",
    "GAMMA",
    "HLL_LG_K",
    "HLL_TYPE",
    "RELATIVE_ACCURACY",
    "CardinalitySketch",
    "QuantileSketch",
    "bin_key",
    "bin_value",
    "canonical_item",
    "release_native_sketches",
]

#: HLL log2 of the number of registers. 2**12 = 4096 registers give a relative
#: standard error of 1.04 / sqrt(4096) ~= 1.6% once sketches have been merged
#: (~1.3% for an unmerged sketch, thanks to the HIP estimator).
HLL_LG_K = 12
HLL_TYPE = tgt_hll_type.HLL_8


def canonical_item(value: Any) -> str | None:
    """The text hashed into an HLL for ``value``, or None for values that are not counted.

    The item is the compact JSON text of the value, so types stay distinct:
    ``"1"`` (string, item ``"1"`` with quotes) and ``1`` (number, item ``1``) are
    two different values, as are ``true`` and ``"true"``. JSON has a single number
    type, so an integral float is the same value as the integer (``1.0`` -> ``1``).
    None, NaN, infinities and non-scalars (objects, lists) are not counted.
    """
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    return None


class CardinalitySketch:
    """A HyperLogLog unique counter (Apache DataSketches, lg_k=12, HLL_8)."""

    __slots__ = ("_sketch",)

    def __init__(self, sketch: hll_sketch | None = None) -> None:
        self._sketch = sketch if sketch is not None else hll_sketch(HLL_LG_K, HLL_TYPE)

    @property
    def lg_k(self) -> int:
        """log2 of the number of registers."""
        return int(self._sketch.lg_config_k)

    def add(self, value: Any) -> bool:
        """Count ``value`` (see ``canonical_item``); returns False when it is not countable."""
        item = canonical_item(value)
        if item is None:
            return False
        self._sketch.update(item)
        return True

    def add_items(self, items: Iterable[str]) -> None:
        """Count items that are already ``canonical_item`` texts (no conversion, no check)."""
        update = self._sketch.update
        for item in items:
            update(item)

    @classmethod
    def union_of(cls, sketches: Iterable[CardinalitySketch]) -> CardinalitySketch:
        """A new sketch counting the union of ``sketches``; equal to merging them one by one."""
        union: hll_union | None = None
        for sketch in sketches:
            if sketch._sketch.is_empty():
                continue
            if union is None:
                union = hll_union(HLL_LG_K)
            union.update(sketch._sketch)
        return cls() if union is None else cls(union.get_result(HLL_TYPE))

    def merge(self, other: CardinalitySketch) -> None:
        """Union ``other`` into this sketch; ``other`` is left unchanged."""
        if other._sketch.is_empty():
            return
        union = hll_union(min(self.lg_k, other.lg_k))
        union.update(self._sketch)
        union.update(other._sketch)
        self._sketch = union.get_result(HLL_TYPE)

    def copy(self) -> CardinalitySketch:
        """An independent copy."""
        return CardinalitySketch.from_bytes(self.to_bytes())

    def estimate(self) -> float:
        """Estimated number of distinct values."""
        return float(self._sketch.get_estimate())

    def bounds(self, num_std_dev: int = 3) -> tuple[float, float]:
        """Lower and upper bounds of the estimate at 1, 2 or 3 standard deviations."""
        lower = self._sketch.get_lower_bound(num_std_dev)
        return float(lower), float(self._sketch.get_upper_bound(num_std_dev))

    def relative_error(self, num_std_dev: int = 3) -> float:
        """Documented relative error bound at ``num_std_dev`` (1, 2 or 3) standard deviations.

        Uses the merged-sketch figure (~1.6% per standard deviation at lg_k=12),
        which is the larger one and applies to every rollup that merged partials.
        """
        if num_std_dev not in (1, 2, 3):
            raise ValueError("num_std_dev must be 1, 2 or 3")
        return abs(float(hll_sketch.get_rel_err(True, True, self.lg_k, num_std_dev)))

    def is_empty(self) -> bool:
        """True when nothing has been added."""
        return bool(self._sketch.is_empty())

    def to_bytes(self) -> bytes:
        """Standard DataSketches HLL compact image."""
        return bytes(self._sketch.serialize_compact())

    @classmethod
    def from_bytes(cls, raw: bytes) -> CardinalitySketch:
        """Read a DataSketches HLL image (any lg_k and register type)."""
        return cls(hll_sketch.deserialize(raw))

    def to_base64(self) -> str:
        """``to_bytes()`` as standard base64 text."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_base64(cls, text: str) -> CardinalitySketch:
        """Inverse of ``to_base64()``."""
        return cls.from_bytes(base64.b64decode(text))


def release_native_sketches() -> int:
    """Let go of the native HLL object of every ``CardinalitySketch`` still alive; returns how many.

    Run at exit (registered below). The DataSketches extension reports each of
    its objects still alive when the interpreter tears it down as "leaked", one
    stderr line each: a worker's rollup state can hold thousands at its stop,
    kept by whatever outlives the last collection (a daemon thread's frame, a
    library's class-level registry of callbacks, objects frozen with
    ``gc.freeze`` and not thawed). The sketches themselves are not usable
    afterwards, which no longer matters then.
    """
    released = 0
    for obj in gc.get_objects():  # tracked objects only: thaw frozen ones first (pipeline.cli does)
        if obj.__class__ is CardinalitySketch and obj._sketch is not None:
            obj._sketch = None
            released += 1
    return released


atexit.register(release_native_sketches)
