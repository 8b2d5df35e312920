"""Merging the records of several windows (and groups) into one answer.

- ``count``, ``sum``: added (``sum`` with ``math.fsum``, exact to the last bit of the inputs);
- ``min``, ``max``: the extremes;
- ``avg``: the merged sum over the merged number of numeric values (not over ``count``,
  which also counts actions without a number);
- ``p50`` .. ``p99``: the DDSketches merged bin by bin, then the quantile (1% relative error);
- ``cardinality(attr)``: the union of the HLL sketches (the estimate of the union,
  not a sum of estimates, so a user seen in two windows counts once).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import add
from typing import Any

from pipeline.rollups.sketches import BIN_LIMIT, CardinalitySketch, QuantileSketch
from pipeline.view.store import Entry

PERCENTILES = {"p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}


def merge_entries(
    entries: Sequence[Entry],
    aggregations: Sequence[str],
    sketches: Callable[[Entry], dict[str, Any]] = Entry.sketch_data,
) -> dict[str, Any]:
    """The value of each of ``aggregations`` over ``entries`` (entries of one rollup).

    ``sketches`` decodes an entry's sketches (``ViewStore.sketch_data`` for a store that spills).
    """
    out: dict[str, Any] = {}
    wanted = set(aggregations)
    # One transposition of the entries' fields, then each field at C speed.
    rows = [e.summary() for e in entries]
    counts, sums, values, lows, highs, _ = zip(*rows, strict=True) if rows else ((),) * 6
    total = math.fsum(filter(None, sums))  # None (no sum kept) and 0.0 add nothing
    n = sum(values)
    if "count" in wanted:
        out["count"] = sum(counts)
    if "sum" in wanted:
        out["sum"] = total
    if "avg" in wanted:
        out["avg"] = total / n if n else None
    if "min" in wanted:
        found = [x for x in lows if x is not None]
        out["min"] = min(found) if found else None
    if "max" in wanted:
        found = [x for x in highs if x is not None]
        out["max"] = max(found) if found else None
    percentiles = [a for a in aggregations if a in PERCENTILES]
    cards = [a for a in aggregations if a.startswith("cardinality(")]
    if percentiles or cards:
        decoded = [sketches(e) for e in entries if e.has_sketches]
        if percentiles:
            sketch = merge_ddsketches([d["ddsketch"] for d in decoded if "ddsketch" in d])
            found = sketch.quantiles([PERCENTILES[p] for p in percentiles])
            out.update(zip(percentiles, found, strict=True))
        for name in cards:
            attr = name[len("cardinality(") : -1]
            images = [d["hll"][attr] for d in decoded if attr in d.get("hll", {})]
            union = CardinalitySketch.union_of(CardinalitySketch.from_base64(i) for i in images)
            out[name] = union.estimate()
    return {a: out.get(a) for a in aggregations}


def merge_ddsketches(sketches: Sequence[dict[str, Any]]) -> QuantileSketch:
    """One sketch holding every value of ``sketches`` (portable DDSketch dicts).

    Bins of sketches with the same mapping merge by adding counts key by key;
    that is done here on the portable form and the sum read back once, which is
    several times faster than reading and merging each sketch. When a store
    would exceed the bin limit (or one arrives collapsed), the library's own
    collapsing merge is used instead.
    """
    if not sketches:
        return QuantileSketch()
    if len(sketches) == 1:
        return QuantileSketch.from_dict(sketches[0])
    merged: dict[str, Any] = dict(sketches[0])
    for side in ("positive", "negative"):
        stores = [s[side] for s in sketches if s[side]["counts"]]
        if any(store.get("collapsed") for store in stores):
            return _merge_slowly(sketches)
        if not stores:
            merged[side] = {"offset": 0, "counts": [], "collapsed": False}
            continue
        low = min(store["offset"] for store in stores)
        high = max(store["offset"] + len(store["counts"]) for store in stores)
        if high - low > BIN_LIMIT:
            return _merge_slowly(sketches)
        total: list[float] = [0] * (high - low)
        for store in stores:
            # Bins are contiguous from the offset: add each store's list in one slice (C speed).
            first = store["offset"] - low
            last = first + len(store["counts"])
            total[first:last] = map(add, total[first:last], store["counts"])
        merged[side] = {"offset": low, "counts": total, "collapsed": False}
    lows = [s["min"] for s in sketches if s["min"] is not None]
    highs = [s["max"] for s in sketches if s["max"] is not None]
    merged["zero_count"] = sum(s["zero_count"] for s in sketches)
    merged["count"] = sum(s["count"] for s in sketches)
    merged["sum"] = math.fsum(s["sum"] for s in sketches)
    merged["min"] = min(lows) if lows else None
    merged["max"] = max(highs) if highs else None
    return QuantileSketch.from_dict(merged)


def _merge_slowly(sketches: Sequence[dict[str, Any]]) -> QuantileSketch:
    merged = QuantileSketch()
    for sketch in sketches:
        merged.merge(QuantileSketch.from_dict(sketch))
    return merged
