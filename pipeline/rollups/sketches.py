"""Mergeable sketches for rollups: DDSketch quantiles and HyperLogLog unique counts.

Rollup records carry these sketches so that consumers in any language can merge
windows and groups themselves. The serialized forms below are a public contract.

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
  record size stay bounded whatever the input.
- ``count``, ``sum``, ``min`` and ``max`` are exact summaries of the values added;
  ``min``/``max`` are ``null`` for an empty sketch. Counts are integers.

``to_bytes()`` is the orjson encoding of that dict; ``to_base64()`` its base64 text.

Cardinality sketch (HyperLogLog), ``CardinalitySketch.to_bytes()``: the standard
Apache DataSketches HLL compact binary image (lg_k = 12, HLL_8), readable by
DataSketches in Java, C++, Python, Go and Rust (``HllSketch.heapify`` /
``hll_sketch::deserialize``); in JSON records it is written as standard base64.
The item hashed for a value is the UTF-8 text of ``canonical_item(value)``
(see there), so consumers that add their own values must encode them the same way.
"""

from __future__ import annotations

import base64
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any

import orjson
from datasketches import hll_sketch, hll_union, tgt_hll_type
from ddsketch import LogCollapsingLowestDenseDDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import CollapsingLowestDenseStore

#: Relative accuracy of every quantile sketch: a reported quantile is within 1% of
#: the true value at that rank.
RELATIVE_ACCURACY = 0.01
#: Maximum number of bins per store (positive and negative values each).
BIN_LIMIT = 2048
#: HLL log2 of the number of registers. 2**12 = 4096 registers give a relative
#: standard error of 1.04 / sqrt(4096) ~= 1.6% once sketches have been merged
#: (~1.3% for an unmerged sketch, thanks to the HIP estimator).
HLL_LG_K = 12
HLL_TYPE = tgt_hll_type.HLL_8

_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)


class QuantileSketch:
    """A DDSketch with 1% relative accuracy and at most 2048 bins per sign."""

    __slots__ = ("_sketch",)

    def __init__(self) -> None:
        # What LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, BIN_LIMIT) builds, with
        # one shared mapping: it is immutable, and computing it was a tenth of a sketch's cost.
        sketch = LogCollapsingLowestDenseDDSketch.__new__(LogCollapsingLowestDenseDDSketch)
        BaseDDSketch.__init__(
            sketch,
            mapping=_MAPPING,
            store=CollapsingLowestDenseStore(BIN_LIMIT),
            negative_store=CollapsingLowestDenseStore(BIN_LIMIT),
            zero_count=0.0,
        )
        self._sketch = sketch

    @property
    def count(self) -> int:
        """Number of values added (exact)."""
        return int(self._sketch.count)

    @property
    def sum(self) -> float:
        """Sum of the values added (plain float sum; use the ``sum`` aggregation for a compensated one)."""
        return float(self._sketch.sum)

    def add(self, value: float) -> None:
        """Add one value. NaN and infinities have no quantile and are rejected."""
        self.add_many((value,))

    def add_many(self, values: Sequence[float]) -> None:
        """Add each of ``values`` (all finite), with one store update per distinct bin.

        Bins get the library's keys (its own formula), and the store is grown
        once to the batch's key range rather than value by value; the result
        equals the library's ``add`` of each value in turn, except below the
        kept range of a collapsed store read back by ``from_dict``: there the
        library's ``add`` writes to a bin outside that range (the count is
        lost from the serialised form), and this counts it in the lowest kept
        bin, as a collapsed store should.
        """
        if not values:
            return
        if not all(map(math.isfinite, values)):
            bad = next(v for v in values if not math.isfinite(v))
            raise ValueError(f"a quantile sketch only takes finite values, got {bad!r}")
        sk = self._sketch
        mapping = sk._mapping
        smallest = mapping.min_possible
        multiplier, offset = mapping._multiplier, mapping._offset
        log, ceil = math.log, math.ceil
        positive: dict[int, int] = {}
        negative: dict[int, int] = {}
        zeros = 0
        for value in values:
            if value > smallest:
                key = int(ceil(log(value, 2) * multiplier) + offset)
                positive[key] = positive.get(key, 0) + 1
            elif value < -smallest:
                key = int(ceil(log(-value, 2) * multiplier) + offset)
                negative[key] = negative.get(key, 0) + 1
            else:
                zeros += 1
        if zeros:
            sk._zero_count += zeros
        for store, counts in ((sk._store, positive), (sk._negative_store, negative)):
            if counts:
                _store_add_counts(store, counts)
        total = sk._sum
        for value in values:  # plain left-to-right float sum, as the library's ``add`` in turn
            total += value
        sk._sum = total
        sk._count += len(values)
        low, high = min(values), max(values)
        if low < sk._min:
            sk._min = low
        if high > sk._max:
            sk._max = high

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of ``other`` to this sketch; ``other`` is left unchanged."""
        self._sketch.merge(other._sketch)

    def copy(self) -> QuantileSketch:
        """An independent copy."""
        clone = QuantileSketch()
        clone.merge(self)
        return clone

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1), or None when empty or q is out of range.

        The rank is ``q * (count - 1)`` rounded down, as in every DDSketch library.
        The estimate is clamped to the exact [min, max]: the true quantile lies
        there, so clamping only moves the estimate closer to it.
        """
        value = self._sketch.get_quantile_value(q)
        if value is None:
            return None
        return float(min(max(value, self._sketch._min), self._sketch._max))

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """``quantile`` of each of ``qs``, with one pass over the bins for all of them.

        The library walks the bins in Python once per quantile; here the running
        counts are summed once (in the same order, hence to the same floats) and
        each rank is found by bisection, so the answers are those of ``quantile``.
        """
        sk = self._sketch
        total = sk._count
        negative, positive = sk._negative_store, sk._store
        running: dict[int, list[float]] = {}
        out: list[float | None] = []
        for q in qs:
            if q < 0 or q > 1 or total == 0:
                out.append(None)
                continue
            rank = q * (total - 1)
            if rank < negative.count:
                counts = running.get(-1) or running.setdefault(-1, list(accumulate(negative.bins)))
                index = bisect_left(counts, negative.count - rank - 1 + 1)  # first running count >= rank + 1
                key = index + negative.offset if index < len(counts) else negative.max_key
                value = -sk._mapping.value(key)
            elif rank < sk._zero_count + negative.count:
                value = 0.0
            else:
                counts = running.get(1) or running.setdefault(1, list(accumulate(positive.bins)))
                index = bisect_right(counts, rank - sk._zero_count - negative.count)  # first count > rank
                key = index + positive.offset if index < len(counts) else positive.max_key
                value = sk._mapping.value(key)
            out.append(float(min(max(value, sk._min), sk._max)))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The portable JSON-friendly form described in the module docstring."""
        sk = self._sketch
        mapping = sk._mapping
        empty = sk.count == 0
        return {
            "type": "ddsketch",
            "mapping": "logarithmic",
            "relative_accuracy": RELATIVE_ACCURACY,
            "gamma": mapping.gamma,
            "index_offset": float(mapping._offset),
            "bin_limit": BIN_LIMIT,
            "positive": _store_to_dict(sk._store),
            "negative": _store_to_dict(sk._negative_store),
            "zero_count": _count(sk._zero_count),
            "count": _count(sk.count),
            "sum": float(sk.sum),
            "min": None if empty else float(sk._min),
            "max": None if empty else float(sk._max),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        """Rebuild a sketch from ``to_dict()`` output; quantiles are exactly preserved.

        Raises ValueError when the dict is not a DDSketch with this module's
        mapping (a different gamma or index offset could not be merged).
        """
        if data.get("type") != "ddsketch" or data.get("mapping", "logarithmic") != "logarithmic":
            raise ValueError("not a logarithmic-mapping ddsketch")
        out = cls()
        sk = out._sketch
        if data["gamma"] != sk._mapping.gamma or float(data.get("index_offset", 0.0)) != sk._mapping._offset:
            raise ValueError(
                f"ddsketch gamma/index_offset {data['gamma']}/{data.get('index_offset')} do not match "
                f"{sk._mapping.gamma}/{sk._mapping._offset} (relative accuracy {RELATIVE_ACCURACY})"
            )
        _store_from_dict(sk._store, data["positive"])
        _store_from_dict(sk._negative_store, data["negative"])
        sk._zero_count = float(data["zero_count"])
        total = sk._store.count + sk._negative_store.count + sk._zero_count
        if total != data["count"]:
            raise ValueError(f"ddsketch bin counts add up to {total}, but count says {data['count']}")
        sk._count = total
        sk._sum = float(data["sum"])
        if total:
            sk._min = float(data["min"])
            sk._max = float(data["max"])
        return out

    def to_bytes(self) -> bytes:
        """The orjson encoding of ``to_dict()``."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> QuantileSketch:
        """Inverse of ``to_bytes()``."""
        return cls.from_dict(orjson.loads(raw))

    def to_base64(self) -> str:
        """``to_bytes()`` as base64 text, for embedding in a JSON string field."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_base64(cls, text: str) -> QuantileSketch:
        """Inverse of ``to_base64()``."""
        return cls.from_bytes(base64.b64decode(text))


def _store_add_counts(store: CollapsingLowestDenseStore, counts: dict[int, int]) -> None:
    """Add ``counts`` (bin key -> count) to ``store``, growing it once for all of them."""
    low, high = min(counts), max(counts)
    if store.count and store.is_collapsed:
        low = max(low, store.min_key)  # a collapsed store does not grow downwards
    if store.count == 0 or low < store.min_key or high > store.max_key:
        store._extend_range(low, high)
    bins = store.bins
    base = store.offset
    first = store.min_key
    for key, count in counts.items():
        # Keys below the kept range of a collapsed store count in its lowest bin.
        bins[key - base if key >= first else first - base] += count
    store.count += sum(counts.values())


def _count(value: float) -> int | float:
    # Bins count with float weights in the library; every weight here is 1, so
    # counts are integral and are written as JSON integers.
    return int(value) if float(value).is_integer() else value


def _store_to_dict(store: CollapsingLowestDenseStore) -> dict[str, Any]:
    if store.count == 0:
        return {"offset": 0, "counts": [], "collapsed": False}
    lo = store.min_key - store.offset
    hi = store.max_key - store.offset
    counts = store.bins[lo : hi + 1]
    # Trim zero edges (possible after collapsing) so the form is canonical.
    start, end = 0, len(counts)
    while start < end and counts[start] == 0:
        start += 1
    while end > start and counts[end - 1] == 0:
        end -= 1
    kept = counts[start:end]
    # Usually every count is integral: converted at C speed, and kept when equal to the bins.
    try:
        whole = list(map(int, kept))
    except (ValueError, OverflowError):  # a count that is not finite (read from a foreign sketch)
        whole = None
    return {
        "offset": store.min_key + start,
        "counts": whole if whole == kept else [_count(c) for c in kept],
        "collapsed": bool(store.is_collapsed),
    }


def _store_from_dict(store: CollapsingLowestDenseStore, data: dict[str, Any]) -> None:
    counts = [float(c) for c in data["counts"]]
    if not counts:
        return
    if len(counts) > store.bin_limit:
        raise ValueError(f"ddsketch store has {len(counts)} bins, more than the limit {store.bin_limit}")
    if any(c < 0 for c in counts):
        raise ValueError("ddsketch bin counts must not be negative")
    # Lay the bins out exactly as the store would hold them with offset == min_key;
    # further adds and merges then grow or collapse it through the library's own code.
    offset = int(data["offset"])
    store.bins = counts
    store.offset = offset
    store.min_key = offset
    store.max_key = offset + len(counts) - 1
    store.count = math.fsum(counts)
    store.is_collapsed = bool(data.get("collapsed", False))


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
