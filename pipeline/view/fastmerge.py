"""The aggregations of many groups over many windows, from the windows' columns.

The answer is the one :func:`pipeline.view.merge.merge_entries` gives, value
for value, for all groups at a time:

- ``count`` and the numeric count add; ``sum`` is ``math.fsum`` of the window sums
  (the same correctly rounded sum); ``min`` / ``max`` are the first extreme in window
  order, an int where the record had one; ``avg`` is the sum over the numeric count;
- percentiles: the DDSketch bins of every window are added in one array (groups by
  bins); the quantile is the representative value of the bin holding rank
  ``q * (count - 1)``, clamped to the exact min and max, as ``QuantileSketch`` does;
- ``cardinality(attr)``: the HLL images unioned in window order with the same
  DataSketches calls as ``CardinalitySketch.union_of``.

Groups the bin array cannot hold (a sketch with negative values, a collapsed
store, fractional counts, or bins spanning more than the bin limit together)
get their percentiles from ``merge_entries`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import compress
from typing import Any

import numpy as np
from datasketches import hll_union

from pipeline.rollups.sketches import BIN_LIMIT, HLL_LG_K, HLL_TYPE, bin_value
from pipeline.view.columns import CacheKey, WindowColumns, WindowSketches
from pipeline.view.merge import PERCENTILES, merge_entries
from pipeline.view.store import GroupKey, ViewStore

#: A window's cache key and its columns.
Columns = list[tuple[CacheKey, WindowColumns]]


def merge_columns(
    store: ViewStore, columns: Columns, groups: Sequence[GroupKey], aggregations: Sequence[str]
) -> dict[GroupKey, dict[str, Any]]:
    """Each of ``aggregations`` for each of ``groups`` over the windows of ``columns`` (one rollup)."""
    if not groups:
        return {}
    ids = store.window_cache.gids(columns[0][0][0])
    # Query position of every group id of the rollup (-1: not asked for).
    position = np.full(len(ids), -1, np.int64)
    position[[ids[g] for g in groups]] = np.arange(len(groups))
    picks = [position[col.gids] for _, col in columns]
    found: dict[str, list[Any]] = _summaries([c for _, c in columns], picks, len(groups), aggregations)
    percentiles = [a for a in aggregations if a in PERCENTILES]
    cards = [a for a in aggregations if a.startswith("cardinality(")]
    if percentiles or cards:
        cache = store.window_cache
        sketches = [cache.sketches(key, col, store.sketch_data) for key, col in columns]
        if percentiles:
            odd = _percentiles(sketches, picks, len(groups), percentiles, found)
            for i in odd:  # the general merge, from the entries of the group
                entries = [
                    col.entries[row]
                    for (_, col), pick in zip(columns, picks, strict=True)
                    for row in np.flatnonzero(pick == i).tolist()
                ]
                values = merge_entries(entries, percentiles, store.sketch_data)
                for name in percentiles:
                    found[name][i] = values[name]
        for name in cards:
            found[name] = _cardinality(sketches, picks, len(groups), name)
    return {g: {a: found[a][i] for a in aggregations} for i, g in enumerate(groups)}


def _summaries(
    columns: list[WindowColumns], picks: list[np.ndarray], n: int, aggregations: Sequence[str]
) -> dict[str, list[Any]]:
    """count, sum, avg, min and max of each group (lists in group order)."""
    count = np.zeros(n, np.int64)
    values = np.zeros(n, np.int64)
    sums = np.zeros((len(columns), n))
    lows = np.full((len(columns), n), np.inf)
    highs = np.full((len(columns), n), -np.inf)
    low_int = np.zeros((len(columns), n), bool)
    high_int = np.zeros((len(columns), n), bool)
    for j, (col, pick) in enumerate(zip(columns, picks, strict=True)):
        asked = pick >= 0
        at = pick[asked]  # a group has one row per window: no position repeats
        count[at] += col.actions[asked]
        values[at] += col.values[asked]
        sums[j, at] = col.sums[asked]
        lows[j, at] = col.low[asked]
        highs[j, at] = col.high[asked]
        low_int[j, at] = col.low_int[asked]
        high_int[j, at] = col.high_int[asked]
    totals = [math.fsum(row) for row in sums.T.tolist()]
    numeric = values.tolist()
    out: dict[str, list[Any]] = {
        "count": count.tolist(),
        "sum": totals,
        "avg": [t / m if m else None for t, m in zip(totals, numeric, strict=True)],
    }
    every = np.arange(n)
    for name, table, ints, pick_first in (
        ("min", lows, low_int, np.argmin),
        ("max", highs, high_int, np.argmax),
    ):
        if name not in aggregations:
            continue
        first = pick_first(table, axis=0)  # the first extreme, in window order, as min() / max() give
        best = table[first, every].tolist()
        as_int = ints[first, every].tolist()
        out[name] = [
            None if math.isinf(v) else int(v) if is_int else v for v, is_int in zip(best, as_int, strict=True)
        ]
    return out


def _percentiles(
    sketches: list[WindowSketches],
    picks: list[np.ndarray],
    n: int,
    names: list[str],
    out: dict[str, list[Any]],
) -> list[int]:
    """Fill ``out[name]`` for the groups the bin array can hold; returns the positions of the others."""
    zero = np.zeros(n, np.int64)
    low = np.full(n, np.inf)
    high = np.full(n, -np.inf)
    odd = np.zeros(n, bool)
    rows, keys, counts = [], [], []
    for sketch, pick in zip(sketches, picks, strict=True):
        asked = pick >= 0
        at = pick[asked]
        zero[at] += sketch.zero[asked]
        low[at] = np.minimum(low[at], sketch.low[asked])
        high[at] = np.maximum(high[at], sketch.high[asked])
        if sketch.odd:
            rows_odd = pick[sketch.odd]
            odd[rows_odd[rows_odd >= 0]] = True
        row = pick[sketch.bin_row]
        keep = row >= 0
        rows.append(row[keep])
        keys.append(sketch.bin_key[keep])
        counts.append(sketch.bin_count[keep])
    row = np.concatenate(rows)
    key = np.concatenate(keys).astype(np.int64)
    count = np.concatenate(counts)
    lo = np.full(n, np.iinfo(np.int64).max)
    hi = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(lo, row, key)
    np.maximum.at(hi, row, key)
    span = np.where(hi >= lo, hi - lo + 1, 0)
    odd |= span > BIN_LIMIT  # the store would collapse: the general merge does it as the library does
    keep = ~odd[row]
    row, key, count = row[keep], key[keep], count[keep]
    width = int(span[~odd].max()) if (~odd).any() else 0
    total = zero.copy()
    cum = None
    if width:
        cells = np.bincount(row * width + (key - lo[row]), weights=count, minlength=n * width)
        cum = np.cumsum(cells.reshape(n, width), axis=1)  # float64: exact for counts below 2**53
        total += cum[:, -1].astype(np.int64)
    totals, zeros, lows, highs, los = total.tolist(), zero.tolist(), low.tolist(), high.tolist(), lo.tolist()
    odd_list = odd.tolist()
    for name in names:
        q = PERCENTILES[name]
        # The rank past the zero bin, with the float operations of QuantileSketch.quantiles.
        target = q * (total - 1) - zero
        index = (cum > target[:, None]).argmax(axis=1).tolist() if cum is not None else [0] * n
        found: list[Any] = [None] * n
        for i in range(n):
            if odd_list[i] or not totals[i]:
                continue
            value = 0.0 if q * (totals[i] - 1) < zeros[i] else bin_value(los[i] + index[i])
            found[i] = float(min(max(value, lows[i]), highs[i]))
        out[name] = found
    return [i for i in range(n) if odd_list[i]]


def _cardinality(sketches: list[WindowSketches], picks: list[np.ndarray], n: int, name: str) -> list[float]:
    """``cardinality(attr)`` of each group: the union of its sketches, in window order."""
    attr = name[len("cardinality(") : -1]
    unions = [hll_union(HLL_LG_K) for _ in range(n)]
    updates = [u.update for u in unions]
    found_any = np.zeros(n, bool)
    for sketch, pick in zip(sketches, picks, strict=True):
        found = sketch.hll.get(attr)
        if found is None:
            continue
        rows, images = found
        at = pick[rows]
        asked = at >= 0
        if not asked.all():
            images = list(compress(images, asked.tolist()))
            at = at[asked]
        found_any[at] = True
        # A group has one row per window: its union takes its sketches in window order.
        for position, image in zip(at.tolist(), images, strict=True):
            updates[position](image)
    # As CardinalitySketch.union_of(...).estimate(): the union's HLL_8 result, estimated
    # (0 for a group without any sketch).
    return [
        float(union.get_result(HLL_TYPE).get_estimate()) if used else 0.0
        for union, used in zip(unions, found_any.tolist(), strict=True)
    ]
