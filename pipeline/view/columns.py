"""Whole windows of a rollup as columns, built once and kept between queries (a bounded cache).

A rolling day covers 83 windows (23 hours and the 60 minutes at its edges);
for 250 groups a query merges about 21,000 entries. One entry at a time, in
Python, that costs about 1 µs for the exact summaries and 12 µs more for the
sketches (decoding their JSON, merging bins and HLL images): 300 ms a query.
Here a window is turned once into columns over all its groups, which
:mod:`pipeline.view.fastmerge` merges for many windows in a few array
operations:

- the summaries: count, numeric count, sum, min and max per row (numpy arrays);
- on first need, the sketches: the DDSketch bins that are not zero (row, bin
  key, count), each row's zero count and exact min and max, and the HLL
  sketches (deserialized once).

A cached window is dropped when a record of it is applied or removed (the
store calls :meth:`WindowCache.drop`), when the store evicts it, and when the
cache grows past its byte bound (least recently used first). DDSketch rows the
arrays cannot hold (negative values, collapsed stores, fractional counts) are
listed as ``odd``; queries merge those groups the general way.
"""

from __future__ import annotations

from array import array
from binascii import a2b_base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from datasketches import hll_sketch

from pipeline.view.entry import (
    COMPACT,
    FINAL,
    HEAD,
    MAX_INT,
    MAX_NONE,
    MIN_INT,
    MIN_NONE,
    NO_SKETCHES,
    SUM_INT,
    SUM_NONE,
    WIDE,
    Entry,
    expand,
)

if TYPE_CHECKING:  # the store imports this module
    from pipeline.view.store import GroupKey

#: Default bound of a store's window cache, in bytes (estimated: arrays, images, a cost per row).
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
#: Estimated bytes per row beyond its arrays: list slots, the entry kept.
_ROW_OVERHEAD = 100
#: Estimated bytes of a decoded HLL sketch of a window (measured: 263 for a few values; a
#: window of thousands of values holds 4 kB of registers, which this underestimates).
_HLL_BYTES = 300

#: (rollup, interval seconds, window start ms)
CacheKey = tuple[str, int, int]


#: The packed heads of entries (see :mod:`pipeline.view.entry`); an int sum, min or max is int64.
_HEAD = np.dtype(
    [("flags", "u1"), ("kind", "u1"), ("actions", "<i8"), ("values", "<i8"),
     ("sum", "<f8"), ("min", "<f8"), ("max", "<f8")]
)  # fmt: skip
_HEAD_INTS = np.dtype(
    [("flags", "u1"), ("kind", "u1"), ("actions", "<i8"), ("values", "<i8"),
     ("sum", "<i8"), ("min", "<i8"), ("max", "<i8")]
)  # fmt: skip


def _heads(entries: list[Entry]) -> np.ndarray | None:
    """The heads of ``entries`` as one structured array; None when one has the wide layout."""
    data = b"".join([e[:HEAD] for e in entries])
    heads = np.frombuffer(data, _HEAD)
    if (heads["flags"] & WIDE).any():
        return None
    return heads


def _floats(
    heads: np.ndarray, name: str, flags: np.ndarray, none: int, is_int: int, empty: float
) -> np.ndarray:
    """Field ``name`` as float64: ``empty`` where None, ints converted."""
    out = heads[name].copy()
    ints = (flags & is_int) != 0
    if ints.any():
        out[ints] = heads.view(_HEAD_INTS)[name][ints].astype(np.float64)
    out[(flags & none) != 0] = empty
    return out


class WindowSketches:
    """The decoded sketches of one window's rows."""

    __slots__ = ("bin_count", "bin_key", "bin_row", "high", "hll", "low", "nbytes", "odd", "zero")

    def __init__(self, rows: int) -> None:
        #: Positive DDSketch bins that are not zero: row, bin key, count.
        self.bin_row = np.zeros(0, np.int32)
        self.bin_key = np.zeros(0, np.int32)
        self.bin_count = np.zeros(0, np.int64)
        #: Per row: DDSketch zero count, exact min and max (+inf / -inf without values).
        self.zero = np.zeros(rows, np.int64)
        self.low = np.full(rows, np.inf)
        self.high = np.full(rows, -np.inf)
        #: Rows whose DDSketch the arrays cannot hold.
        self.odd: list[int] = []
        #: Per attribute: the rows that have a sketch of it that is not empty, and those sketches.
        self.hll: dict[str, tuple[np.ndarray, list[hll_sketch]]] = {}
        self.nbytes = 0


class WindowColumns:
    """One rollup window, every group of it, in columns."""

    __slots__ = (
        "actions",
        "entries",
        "final",
        "gids",
        "high",
        "high_int",
        "low",
        "low_int",
        "nbytes",
        "rows",
        "sketches",
        "sums",
        "values",
    )

    def __init__(self, groups: dict[GroupKey, Entry], gids: np.ndarray) -> None:
        #: The groups and their entries, in row order (the entries the columns were made of).
        self.rows: list[GroupKey] = list(groups)
        self.entries: list[Entry] = list(groups.values())
        #: Each row's group id (``WindowCache.gids``): queries pick their groups with it.
        self.gids = gids
        entries = self.entries
        n = len(entries)
        heads = _heads(entries)
        if heads is not None:
            flags = heads["flags"]
            #: Whether every entry of the window is final.
            self.final = bool((flags & FINAL).all())
            self.actions = heads["actions"].copy()
            self.values = heads["values"].copy()
            # None (no sum kept) adds nothing, as 0.0 does: math.fsum of the merge skips both.
            # + 0.0: a sum of -0.0 adds nothing either (the merge filters it out as falsy).
            self.sums = _floats(heads, "sum", flags, SUM_NONE, SUM_INT, 0.0) + 0.0
            # min / max: +inf / -inf for None; the int flags give back ints where the record had them.
            self.low = _floats(heads, "min", flags, MIN_NONE, MIN_INT, np.inf)
            self.high = _floats(heads, "max", flags, MAX_NONE, MAX_INT, -np.inf)
            self.low_int = (flags & MIN_INT) != 0
            self.high_int = (flags & MAX_INT) != 0
        else:  # an entry of the wide layout: field by field
            self.final = all(e.final for e in entries)
            self.actions = np.fromiter((e.actions for e in entries), np.int64, n)
            self.values = np.fromiter((e.values for e in entries), np.int64, n)
            self.sums = np.fromiter((e.sum or 0.0 for e in entries), np.float64, n)
            self.low = np.fromiter((np.inf if e.min is None else e.min for e in entries), np.float64, n)
            self.high = np.fromiter((-np.inf if e.max is None else e.max for e in entries), np.float64, n)
            self.low_int = np.fromiter((e.min.__class__ is int for e in entries), bool, n)
            self.high_int = np.fromiter((e.max.__class__ is int for e in entries), bool, n)
        #: The decoded sketches, once a query needed them.
        self.sketches: WindowSketches | None = None
        arrays = (gids, self.actions, self.values, self.sums, self.low, self.high)
        self.nbytes = sum(a.nbytes for a in arrays) + 2 * n + _ROW_OVERHEAD * n  # + the int flags


def decode_sketches(entries: list[Entry], sketch_data: Callable[[Entry], dict[str, Any]]) -> WindowSketches:
    """The sketch columns of a window's entries (``sketch_data`` decodes an entry's sketches)."""
    n = len(entries)
    out = WindowSketches(n)
    chunks: list[bytes] = []  # each row's positive counts as int64; split apart once for all rows
    offsets: list[int] = []
    lengths: list[int] = []
    zero, low, high = out.zero, out.low, out.high
    hlls = 0
    hll_rows: dict[str, tuple[list[int], list[hll_sketch]]] = {}
    deserialize = hll_sketch.deserialize
    for row, data in enumerate(_decoded(entries, sketch_data)):
        if data is None:
            offsets.append(0)
            lengths.append(0)
            continue
        for attr, image in data.get("hll", {}).items():
            held = hll_rows.get(attr)
            if held is None:
                held = hll_rows[attr] = ([], [])
            hlls += 1
            hll = deserialize(a2b_base64(image))
            if not hll.is_empty():  # an empty one adds nothing to a union
                held[0].append(row)
                held[1].append(hll)
        sketch = data.get("ddsketch")
        counts = None if sketch is None else _plain_counts(sketch)
        if sketch is None or counts is None:
            if sketch is not None:
                out.odd.append(row)
            offsets.append(0)
            lengths.append(0)
            continue
        chunks.append(counts)
        offsets.append(int(sketch["positive"]["offset"]))
        lengths.append(len(counts) // 8)
        zero[row] = sketch["zero_count"]
        if sketch["count"]:
            low[row], high[row] = sketch["min"], sketch["max"]
    if chunks:
        flat = np.frombuffer(b"".join(chunks), np.int64)
        sizes = np.asarray(lengths, np.int64)
        row_of = np.repeat(np.arange(n, dtype=np.int64), sizes)
        first = np.cumsum(sizes) - sizes  # where each row's counts start in ``flat``
        found = np.flatnonzero(flat)
        owner = row_of[found]
        out.bin_row = owner.astype(np.int32)
        out.bin_key = (found - first[owner] + np.asarray(offsets, np.int64)[owner]).astype(np.int32)
        out.bin_count = flat[found]
    out.hll = {attr: (np.asarray(rows, np.int64), images) for attr, (rows, images) in hll_rows.items()}
    arrays = (out.bin_row, out.bin_key, out.bin_count, out.zero, out.low, out.high)
    out.nbytes = sum(a.nbytes for a in arrays) + _HLL_BYTES * hlls
    return out


def _decoded(
    entries: list[Entry], sketch_data: Callable[[Entry], dict[str, Any]]
) -> list[dict[str, Any] | None]:
    """Each entry's decoded sketches (None: it has none).

    The compacted texts of the window are expanded and decoded together, as one JSON
    array: one call each instead of one per entry. Others go through ``sketch_data``.
    """
    out: list[dict[str, Any] | None] = [None] * len(entries)
    rows: list[int] = []
    texts: list[bytes] = []
    for row, entry in enumerate(entries):
        kind, payload = entry.sketch_payload()
        if kind == COMPACT:
            rows.append(row)
            texts.append(payload)
        elif kind != NO_SKETCHES:
            out[row] = sketch_data(entry)
    if texts:
        # The markers stand only for what compact() replaced: the commas and brackets
        # between the texts are left as they are by expand().
        for row, data in zip(rows, orjson.loads(expand(b"[" + b",".join(texts) + b"]")), strict=True):
            out[row] = data
    return out


def _plain_counts(sketch: dict[str, Any]) -> bytes | None:
    """The positive counts as int64 bytes, or None when the arrays cannot hold this sketch.

    They hold non-negative values counted in whole numbers by stores that never
    collapsed: the sketches of positive measures, such as amounts and durations.
    """
    positive, negative = sketch["positive"], sketch["negative"]
    if negative["counts"] or positive.get("collapsed") or negative.get("collapsed"):
        return None
    if sketch["zero_count"].__class__ is not int:
        return None
    try:
        return array("q", positive["counts"]).tobytes()  # TypeError on a fractional count
    except (TypeError, OverflowError):
        return None


class WindowCache:
    """Columns of windows by (rollup, interval, start); least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        #: Estimated bytes of the windows held.
        self.nbytes = 0
        #: Windows built (misses), found (hits) and sketch columns decoded, since the start.
        self.built = 0
        self.found = 0
        self.decoded = 0
        self._windows: dict[CacheKey, WindowColumns] = {}
        #: Whether to note the windows records changed (in ``stale``), for a warmer to build again.
        self.track_stale = False
        #: Windows dropped (a record of theirs applied or removed) since a warmer last looked.
        self.stale: set[CacheKey] = set()
        self._gids: dict[str, dict[GroupKey, int]] = {}
        self._groups: dict[str, list[GroupKey]] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def gids(self, rollup: str) -> dict[GroupKey, int]:
        """The group ids of ``rollup``: a number per group ever put in columns, never reused."""
        found = self._gids.get(rollup)
        if found is None:
            found = self._gids[rollup] = {}
        return found

    def groups(self, rollup: str) -> list[GroupKey]:
        """The groups of ``rollup`` by id."""
        return self._groups.setdefault(rollup, [])

    def window(self, key: CacheKey, groups: dict[GroupKey, Entry]) -> WindowColumns:
        """The columns of window ``key`` whose entries are ``groups``: cached, or built now."""
        found = self._windows.pop(key, None)
        if found is not None:
            self._windows[key] = found  # most recently used last
            self.found += 1
            return found
        ids, by_id = self.gids(key[0]), self.groups(key[0])
        for group in groups:
            if group not in ids:
                ids[group] = len(ids)
                by_id.append(group)
        found = WindowColumns(groups, np.fromiter((ids[g] for g in groups), np.int32, len(groups)))
        self.built += 1
        self._windows[key] = found
        self._grew(found.nbytes)
        return found

    def sketches(
        self, key: CacheKey, columns: WindowColumns, sketch_data: Callable[[Entry], dict[str, Any]]
    ) -> WindowSketches:
        """The sketch columns of a window got from ``window`` (decoded on first need)."""
        found = columns.sketches
        if found is None:
            found = columns.sketches = decode_sketches(columns.entries, sketch_data)
            self.decoded += 1
            if self._windows.get(key) is columns:
                columns.nbytes += found.nbytes
                self._grew(found.nbytes)
        return found

    def _grew(self, nbytes: int) -> None:
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes and len(self._windows) > 1:
            oldest = next(iter(self._windows))
            self.nbytes -= self._windows.pop(oldest).nbytes

    def clear(self) -> None:
        """Forget every window (the group ids stay)."""
        self._windows.clear()
        self.nbytes = 0

    def holds(self, key: CacheKey) -> bool:
        """Whether window ``key`` is cached (without counting it as used)."""
        return key in self._windows

    def held(self) -> list[CacheKey]:
        """The windows held, least recently used first."""
        return list(self._windows)

    def release(self, key: CacheKey) -> None:
        """Forget window ``key`` to make room (it is built again on its next use)."""
        gone = self._windows.pop(key, None)
        if gone is not None:
            self.nbytes -= gone.nbytes

    def drop(self, key: CacheKey) -> None:
        """Forget window ``key`` (a record of it was applied or removed)."""
        gone = self._windows.pop(key, None)
        if gone is not None:
            self.nbytes -= gone.nbytes
        if self.track_stale:
            self.stale.add(key)

    def evicted(self, key: CacheKey) -> None:
        """Forget window ``key`` for good (out of retention): not to be built again."""
        gone = self._windows.pop(key, None)
        if gone is not None:
            self.nbytes -= gone.nbytes
        self.stale.discard(key)
