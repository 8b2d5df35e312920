"""The project's DDSketch: a logarithmic mapping and two collapsing-lowest dense stores.

Written here rather than used from the ``ddsketch`` package: that package's public
API adds one value at a time, cannot be read bin by bin without its private
fields (so it cannot write the published form), and through it every other
sketch operation of the rollups costs more, reading back and quantiles several
times as much (bench/sketches.py compares the three). The bins, keys and
quantiles are the package's own for ``LogCollapsingLowestDenseDDSketch(0.01,
2048)``: the mapping below uses the very float operations of its
``LogarithmicMapping``, and the tests compare quantiles at every rank with the
package's. The serialized form is described in ``pipeline.rollups.sketches``.
"""

from __future__ import annotations

import base64
import math
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate
from operator import add
from typing import Any

import orjson

#: Relative accuracy of every quantile sketch: a reported quantile is within 1% of
#: the true value at that rank.
RELATIVE_ACCURACY = 0.01
#: Maximum number of bins per store (positive and negative values each).
BIN_LIMIT = 2048

# The logarithmic mapping, computed with the very float operations of the DDSketch
# libraries' LogarithmicMapping, so that every value gets the same bin key there and here.
_GAMMA_MANTISSA = 2 * RELATIVE_ACCURACY / (1 - RELATIVE_ACCURACY)
#: Ratio between the bounds of a bin.
GAMMA = 1 + _GAMMA_MANTISSA
_MULTIPLIER = 1 / math.log1p(_GAMMA_MANTISSA) * math.log(2)  # 1 / log2(gamma)
_REPRESENTATIVE = 2.0 / (1 + GAMMA)
#: Magnitudes at or below this count as zero (the smallest normal float times gamma).
MIN_INDEXABLE = sys.float_info.min * GAMMA


def bin_key(magnitude: float) -> int:
    """The bin of a magnitude above ``MIN_INDEXABLE``: ``ceil(log_gamma(magnitude))``."""
    return math.ceil(math.log(magnitude, 2) * _MULTIPLIER)


def bin_value(key: int) -> float:
    """The representative value of bin ``key``, within the relative accuracy of all its values.

    The top bin (values above ``sys.float_info.max / gamma``) has no finite
    representative: its value is the largest float (the libraries raise there).
    """
    try:
        return math.pow(2.0, key / _MULTIPLIER) * _REPRESENTATIVE
    except OverflowError:
        return sys.float_info.max


class _Store:
    """Counts of contiguous bins ``lo .. lo + len(counts) - 1``, at most ``BIN_LIMIT`` of them.

    When the bins would span more than the limit, the lowest ones are folded
    into the lowest kept bin and the store is marked collapsed; from then on it
    does not grow downwards (lower keys count in its lowest bin). The counts of
    a non-empty store are never zero at either end.
    """

    __slots__ = ("collapsed", "counts", "lo")

    def __init__(self) -> None:
        self.lo = 0
        self.counts: list[Any] = []  # int, or float for weighted sketches from elsewhere
        self.collapsed = False

    def total(self) -> Any:
        """The sum of the counts."""
        return sum(self.counts)

    def copy(self) -> _Store:
        """An independent copy."""
        clone = _Store()
        clone.lo, clone.counts, clone.collapsed = self.lo, self.counts[:], self.collapsed
        return clone

    def reframe(self, low: int, high: int) -> int:
        """Make room for keys ``low .. high``; returns the lowest kept key (lower keys fold into it)."""
        counts, lo = self.counts, self.lo
        if counts:
            if self.collapsed and low < lo:
                low = lo
            hi = lo + len(counts) - 1
            if low >= lo and high <= hi:
                return lo
            low, high = min(low, lo), max(high, hi)
        if high - low >= BIN_LIMIT:
            low = high - BIN_LIMIT + 1
            self.collapsed = True
        if not counts:
            self.lo, self.counts = low, [0] * (high - low + 1)
            return low
        if low > lo:  # fold the bins below the new lowest one into it
            cut = low - lo
            folded = sum(counts[:cut])
            counts = counts[cut:] or [0]
            counts[0] += folded
        elif low < lo:
            counts = [0] * (lo - low) + counts
        missing = high - low + 1 - len(counts)
        if missing > 0:
            counts.extend([0] * missing)
        self.lo, self.counts = low, counts
        return low

    def add_counts(self, found: dict[int, int]) -> None:
        """Add ``found`` (bin key -> count), growing the store once for all of them."""
        lo = self.reframe(min(found), max(found))
        counts = self.counts
        for key, count in found.items():
            counts[key - lo if key >= lo else 0] += count

    def merge(self, other: _Store) -> None:
        """Add the counts of ``other`` (left unchanged)."""
        theirs = other.counts
        if not theirs:
            return
        lo = self.reframe(other.lo, other.lo + len(theirs) - 1)
        counts = self.counts
        start = other.lo - lo
        if start < 0:  # bins below the lowest kept one fold into it
            counts[0] += sum(theirs[:-start])
            theirs, start = theirs[-start:], 0
        end = start + len(theirs)
        counts[start:end] = map(add, counts[start:end], theirs)
        # Lower values may be folded into the other's lowest bin: so they may be here now too.
        self.collapsed = self.collapsed or other.collapsed

    def to_dict(self) -> dict[str, Any]:
        """The store's part of the serialized form (an empty store: offset 0, no counts)."""
        return {
            "offset": self.lo if self.counts else 0,
            "counts": self.counts[:],
            "collapsed": self.collapsed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> tuple[_Store, int | float]:
        """The store of ``to_dict()`` output, and the sum of its counts (a float: some are fractional)."""
        store = cls()
        counts = data["counts"]
        if len(counts) > BIN_LIMIT:
            raise ValueError(f"ddsketch store has {len(counts)} bins, more than the limit {BIN_LIMIT}")
        if not counts:
            return store, 0
        total = sum(counts)  # an int exactly when every count is one (the usual): no check per count
        if total.__class__ is not int:  # counts from elsewhere: weighted, or written as floats
            counts = [_count(c) for c in counts]
            total = math.fsum(counts)
        if min(counts) < 0:
            raise ValueError("ddsketch bin counts must not be negative")
        start, end = 0, len(counts)
        while start < end and counts[start] == 0:  # canonical: no zero bin at either end
            start += 1
        while end > start and counts[end - 1] == 0:
            end -= 1
        store.lo = int(data["offset"]) + start
        store.counts = counts[start:end]
        store.collapsed = bool(data.get("collapsed", False))
        return store, total


def _count(value: Any) -> int | float:
    """A count as an int when it is integral (every count added here), else as it is."""
    if value.__class__ is int:
        return value
    number = float(value)
    return int(number) if number.is_integer() else number


class QuantileSketch:
    """A DDSketch with 1% relative accuracy and at most 2048 bins per sign."""

    __slots__ = ("_count", "_max", "_min", "_negative", "_positive", "_sum", "_weighted", "_zero")

    def __init__(self) -> None:
        self._positive = _Store()
        self._negative = _Store()
        self._zero: int | float = 0
        self._count: int | float = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._weighted = False  # a fractional count read from elsewhere: counts need normalising

    @property
    def count(self) -> int:
        """Number of values added (exact)."""
        return int(self._count)

    @property
    def sum(self) -> float:
        """Sum of the values added (plain float sum; use the ``sum`` aggregation for a compensated one)."""
        return self._sum

    def add(self, value: float) -> None:
        """Add one value. NaN and infinities have no quantile and are rejected."""
        self.add_many((value,))

    def add_many(self, values: Sequence[float]) -> None:
        """Add each of ``values`` (all finite), with one store update per batch.

        The result equals adding the values one by one: bins are counted in a
        dict first, and each store grows once to the batch's key range.
        """
        if not values:
            return
        if not all(map(math.isfinite, values)):
            bad = next(v for v in values if not math.isfinite(v))
            raise ValueError(f"a quantile sketch only takes finite values, got {bad!r}")
        smallest, multiplier = MIN_INDEXABLE, _MULTIPLIER
        log, ceil = math.log, math.ceil
        positive: dict[int, int] = {}
        negative: dict[int, int] = {}
        zeros = 0
        for value in values:
            if value > smallest:
                key = ceil(log(value, 2) * multiplier)
                positive[key] = positive.get(key, 0) + 1
            elif value < -smallest:
                key = ceil(log(-value, 2) * multiplier)
                negative[key] = negative.get(key, 0) + 1
            else:
                zeros += 1
        if positive:
            self._positive.add_counts(positive)
        if negative:
            self._negative.add_counts(negative)
        self._zero += zeros
        total = self._sum
        for value in values:  # a plain left-to-right float sum, as the libraries' ``add`` in turn
            total += value
        self._sum = total
        self._count += len(values)
        low, high = min(values), max(values)
        if low < self._min:
            self._min = low
        if high > self._max:
            self._max = high

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of ``other`` to this sketch; ``other`` is left unchanged."""
        if not other._count:
            return
        self._positive.merge(other._positive)
        self._negative.merge(other._negative)
        self._zero += other._zero
        self._count += other._count
        self._sum += other._sum
        self._weighted = self._weighted or other._weighted
        if other._min < self._min:
            self._min = other._min
        if other._max > self._max:
            self._max = other._max

    def copy(self) -> QuantileSketch:
        """An independent copy."""
        clone = QuantileSketch()
        clone._positive, clone._negative = self._positive.copy(), self._negative.copy()
        clone._zero, clone._count, clone._sum = self._zero, self._count, self._sum
        clone._min, clone._max, clone._weighted = self._min, self._max, self._weighted
        return clone

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1), or None when empty or q is out of range.

        The rank is ``q * (count - 1)``, as in every DDSketch library: the
        estimate is the representative value of the bin holding the value of
        rank ``floor(q * (count - 1))``. It is clamped to the exact [min, max]:
        the true quantile lies there, so clamping only moves the estimate closer.
        """
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """``quantile`` of each of ``qs``, summing the running counts once for all of them."""
        total = self._count
        negative, positive = self._negative, self._positive
        negatives = negative.total() if negative.counts else 0
        below_positive = negatives + self._zero
        running: dict[int, list[Any]] = {}
        out: list[float | None] = []
        for q in qs:
            if q < 0 or q > 1 or total == 0:
                out.append(None)
                continue
            rank = q * (total - 1)
            if rank < negatives:
                # Negative bins hold magnitudes: rank r from the bottom is rank (n - 1 - r) among them.
                counts = running.get(-1) or running.setdefault(-1, list(accumulate(negative.counts)))
                index = bisect_left(counts, negatives - rank)  # first running count >= reversed rank + 1
                value = -bin_value(negative.lo + min(index, len(counts) - 1))
            elif rank < below_positive:
                value = 0.0
            else:
                counts = running.get(1) or running.setdefault(1, list(accumulate(positive.counts)))
                index = bisect_right(counts, rank - below_positive)  # first running count > rank
                value = bin_value(positive.lo + min(index, len(counts) - 1))
            out.append(float(min(max(value, self._min), self._max)))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The portable JSON-friendly form described in the module docstring."""
        empty = self._count == 0
        positive, negative = self._positive.to_dict(), self._negative.to_dict()
        if self._weighted:
            for store in (positive, negative):
                store["counts"] = [_count(c) for c in store["counts"]]
        return {
            "type": "ddsketch",
            "mapping": "logarithmic",
            "relative_accuracy": RELATIVE_ACCURACY,
            "gamma": GAMMA,
            "index_offset": 0.0,
            "bin_limit": BIN_LIMIT,
            "positive": positive,
            "negative": negative,
            "zero_count": _count(self._zero),
            "count": _count(self._count),
            "sum": self._sum,
            "min": None if empty else self._min,
            "max": None if empty else self._max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        """Rebuild a sketch from ``to_dict()`` output; quantiles are exactly preserved.

        Raises ValueError when the dict is not a DDSketch with this module's
        mapping (a different gamma or index offset could not be merged).
        """
        if data.get("type") != "ddsketch" or data.get("mapping", "logarithmic") != "logarithmic":
            raise ValueError("not a logarithmic-mapping ddsketch")
        if data["gamma"] != GAMMA or float(data.get("index_offset", 0.0)) != 0.0:
            raise ValueError(
                f"ddsketch gamma/index_offset {data['gamma']}/{data.get('index_offset')} do not match "
                f"{GAMMA}/0.0 (relative accuracy {RELATIVE_ACCURACY})"
            )
        out = cls()
        out._positive, positives = _Store.from_dict(data["positive"])
        out._negative, negatives = _Store.from_dict(data["negative"])
        out._zero = zero = _count(data["zero_count"])
        total = positives + negatives + zero
        out._weighted = total.__class__ is float
        if total != data["count"]:
            raise ValueError(f"ddsketch bin counts add up to {total}, but count says {data['count']}")
        out._count = _count(total)
        total_sum = data["sum"]  # null: the plain float sum overflowed (JSON has no infinity)
        out._sum = math.nan if total_sum is None else float(total_sum)
        if total:
            out._min = float(data["min"])
            out._max = float(data["max"])
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
