"""The latest record per key of the rollup and facet topics, held for queries.

Records are upserts: applying them in topic order leaves the latest per key,
and a tombstone (no value) removes the key. A rollup record is kept as one
packed :class:`~pipeline.view.entry.Entry` (the exact summaries, the finality
flag and the sketches' JSON with its repeated fragments replaced by single
bytes, decoded only when a query needs percentiles or unique counts); a facet
value record as its count and finality flag.

Memory per key is measured by ``bench/query.py`` (figures in bench/results.md):
the packed entry and its slot in the window's dict; a busy window's sketches
take a few kB more. Past ``spill.capacity`` keys, the
sketches of further keys are kept in RocksDB (:mod:`pipeline.view.spill`) and
only the summaries stay in memory. Windows that ended longer ago than the
view's retention are not kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from pipeline.rollups.windows import SECOND_MS, parse_interval
from pipeline.view.columns import DEFAULT_CACHE_BYTES, WindowCache
from pipeline.view.entry import Entry
from pipeline.view.spill import SketchSpill

#: Seconds of the interval texts seen in records.
_INTERVALS: dict[str, int] = {}

#: A group's values in the order of the rollup's group_by.
GroupKey = tuple[Any, ...]
#: (interval seconds, window start ms)
WindowKey = tuple[int, int]


def numeric_count(record: dict[str, Any]) -> int:
    """How many numeric measure values a measure-rollup record aggregated.

    ``count`` is not it: it counts every matching action, with or without a
    number. The DDSketch's ``count`` is exactly it; a record without a DDSketch
    (no percentile kept) gives ``sum / avg``, rounded (exact while the count is
    below 2**50; an average of exactly 0 cannot tell and counts as 0 values).
    """
    sketch = record.get("sketches", {}).get("ddsketch")
    if sketch is not None:
        return int(sketch["count"])
    return _numeric_without_sketch(record["aggregations"])


def _numeric_without_sketch(aggs: dict[str, Any]) -> int:
    total, avg = aggs.get("sum"), aggs.get("avg")
    if total is None or not avg:
        return 0
    return round(total / avg)


def sketches_text(value: bytes) -> bytes | None:
    """The ``sketches`` object's JSON text cut out of an encoded record, or None when unsure.

    Records as the workers write them have ``"sketches":{...}`` just before
    ``"final":true|false``; cutting it out spares encoding it again. The checks
    make sure the cut is that object: the key follows a comma (a group value
    cannot hold an unescaped quote), the text is one object, and ``"final"`` is
    followed by a boolean (an HLL attribute named ``final`` is followed by a
    string). Anything else gives None, and the caller encodes the decoded object.
    """
    start = value.find(b',"sketches":{')
    if start < 0:
        return None
    end = value.find(b'},"final":', start)
    if end < 0 or value[end + 10 : end + 11] not in (b"t", b"f"):
        return None
    return value[start + 12 : end + 1]


#: Sketch texts shorter than this are decoded with the record: cutting costs as much as it spares.
_SPLIT_ABOVE = 256


def decode_record(value: bytes) -> tuple[dict[str, Any], Entry]:
    """An encoded measure-rollup record, decoded, and its :class:`Entry`.

    Where ``sketches_text`` finds the sketches, a long sketches text is cut out
    before decoding the rest: that spares decoding the sketches (most of a
    record's text, kept as text anyway), about 5 µs of 12 for a record with a
    DDSketch. The numeric count is then the DDSketch's ``count``, read from the
    text: the ``"count"`` after its ``"zero_count"`` (the order of the portable
    form), digits only; anything else and the whole record is decoded.
    """
    start = value.find(b',"sketches":{')
    end = value.find(b'},"final":', start) if start >= 0 else -1
    if end < 0 or value[end + 10 : end + 11] not in (b"t", b"f"):
        record = orjson.loads(value)
        return record, entry_of(record)
    sketches = value[start + 12 : end + 1]
    if end - start >= _SPLIT_ABOVE:
        at = sketches.find(b'"zero_count":')
        count: int | None = None
        if at >= 0:
            at = sketches.find(b',"count":', at)
            stop = sketches.find(b",", at + 9)
            digits = sketches[at + 9 : stop]
            if at >= 0 and stop >= 0 and digits.isdigit():
                count = int(digits)
        if count is not None or b'"ddsketch":' not in sketches:
            record = orjson.loads(value[:start] + value[end + 1 :])
            n = _numeric_without_sketch(record["aggregations"]) if count is None else count
            return record, _entry(record, n, sketches)
    record = orjson.loads(value)
    return record, _entry(record, numeric_count(record), sketches if record["sketches"] else None)


def entry_of(record: dict[str, Any], raw: bytes | None = None) -> Entry:
    """The :class:`Entry` of a measure-rollup record (``raw``: its encoded form, when at hand)."""
    sketches = record.get("sketches")
    return _entry(record, numeric_count(record), _sketch_bytes(sketches, raw) if sketches else None)


def _entry(record: dict[str, Any], n: int, sketches: bytes | None) -> Entry:
    aggs = record["aggregations"]
    total = aggs.get("sum")
    if total is None and aggs.get("avg") is not None:
        total = aggs["avg"] * n  # a rollup that keeps avg but not sum
    # Positional: a third cheaper than by keyword, for every record applied.
    return Entry(
        int(aggs.get("count", 0)), total, n, aggs.get("min"), aggs.get("max"), bool(record["final"]), sketches
    )


def _sketch_bytes(sketches: dict[str, Any], raw: bytes | None) -> bytes:
    cut = sketches_text(raw) if raw is not None else None
    if cut is not None:
        return cut
    # A copy: orjson returns its bytes in an over-allocated buffer (~8 kB of memory kept for a
    # 300-byte text, measured), which would be most of the memory of every key.
    return bytes(memoryview(orjson.dumps(sketches)))


class ViewStore:
    """Rollup entries by rollup, window and group; facet counts by facet, window and value."""

    def __init__(
        self,
        retention_ms: int | None = None,
        spill: SketchSpill | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        #: Windows that ended before the newest window end seen minus this are not kept (None: all).
        self.retention_ms = retention_ms
        #: Where sketches go beyond ``spill.capacity`` keys (None: all in memory).
        self.spill = spill
        #: Windows queries used, as columns, kept for the next queries until a record of
        #: the window arrives (see :mod:`pipeline.view.columns`).
        self.window_cache = WindowCache(cache_bytes)
        #: Keys whose sketches are in memory.
        self.sketches_in_memory = 0
        self.rollups: dict[str, dict[WindowKey, dict[GroupKey, Entry]]] = {}
        #: Group-by paths of each rollup, in record order.
        self.group_names: dict[str, tuple[str, ...]] = {}
        #: Aggregation names seen in each rollup's records.
        self.aggregations: dict[str, tuple[str, ...]] = {}
        self.facets: dict[str, dict[WindowKey, dict[Any, tuple[int, bool]]]] = {}
        #: One copy of each group key and facet value for all their windows (a group's tuple
        #: and texts would otherwise be made again for every record: ~110 bytes per key).
        self._shared: dict[Any, Any] = {}
        #: Latest window end seen (ms): the view's notion of "now" for retention.
        self.newest_end = 0
        self.keys = 0

    # -- applying records ------------------------------------------------------------------

    def apply_rollup(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one rum.measures.rollup record (value None: a tombstone for ``key``)."""
        if value is None:
            if key is not None:
                data = orjson.loads(key)
                self._remove_rollup(data["rollup"], data["interval"], data["window_start"], data["group"])
            return
        self._apply(*decode_record(value))

    def apply_rollup_record(self, record: dict[str, Any], raw: bytes | None = None) -> None:
        """Apply one decoded measure-rollup record (``raw``: its encoded form, when at hand)."""
        self._apply(record, None, raw)

    def _apply(self, record: dict[str, Any], entry: Entry | None, raw: bytes | None = None) -> None:
        """Apply a decoded record whose entry is ``entry`` (None: made from the record and ``raw``)."""
        # Run for every record of a catch-up: lookups written out rather than in helpers.
        rollup = record["rollup"]
        end = record["window_end"]
        if end > self.newest_end:
            self.newest_end = end
        elif self.retention_ms is not None and end < self.newest_end - self.retention_ms:
            return
        text = record["interval"]
        seconds = _INTERVALS.get(text)
        if seconds is None:
            seconds = _INTERVALS[text] = parse_interval(text)
        window = (seconds, record["window_start"])
        group = record["group"]
        windows = self.rollups.get(rollup)
        if windows is None:
            windows = self.rollups[rollup] = {}
            self.group_names[rollup] = tuple(group)
            self.aggregations[rollup] = tuple(record["aggregations"])
        groups = windows.get(window)
        if groups is None:
            groups = windows[window] = {}
        gkey = tuple(group.values())
        gkey = self._shared.setdefault(gkey, gkey)
        cache = self.window_cache
        # Something cached (every window held counts some bytes), or a warmer to tell.
        if cache.nbytes or cache.track_stale:
            cache.drop((rollup, seconds, window[1]))
        old = groups.get(gkey)
        if entry is None:
            entry = entry_of(record, raw)
        if old is None:
            self.keys += 1
            if not entry.has_sketches or self.spill is not None:
                entry = self._place(entry, None)
            else:
                self.sketches_in_memory += 1
            groups[gkey] = entry
            return
        groups[gkey] = self._place(entry, old)

    def _place(self, entry: Entry, old: Entry | None) -> Entry:
        """``entry`` with its sketches in memory or in the spill; ``old``'s place is reused or freed."""
        handle = old.sketches if old is not None and old.spilled else None
        if old is not None and old.has_sketches and not old.spilled:
            self.sketches_in_memory -= 1
        if not entry.has_sketches or entry.spilled:
            if handle is not None:
                self._drop(old)
            return entry
        spill = self.spill
        if spill is not None and (handle is not None or self.sketches_in_memory >= spill.capacity):
            assert handle is None or isinstance(handle, int)
            text = entry.sketches
            assert isinstance(text, bytes)
            return entry.with_sketches(spill.put(text, handle))
        self.sketches_in_memory += 1
        return entry

    def _drop(self, entry: Entry | None) -> None:
        """Release what a removed entry holds outside its own object."""
        if entry is None or not entry.has_sketches:
            return
        if entry.spilled:
            if self.spill is not None:
                handle = entry.sketches
                assert isinstance(handle, int)
                self.spill.delete(handle)
        else:
            self.sketches_in_memory -= 1

    def sketch_data(self, entry: Entry) -> dict[str, Any]:
        """The decoded ``sketches`` object of an entry of this store ({} when it has none)."""
        if entry.spilled:
            assert self.spill is not None
            handle = entry.sketches
            assert isinstance(handle, int)
            return orjson.loads(self.spill.get(handle))
        return entry.sketch_data()

    def apply_facet(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one rum.facets.index record (value None: a tombstone for ``key``)."""
        if value is None:
            if key is not None:
                facet, val, interval, start = orjson.loads(key)
                self._remove_facet(facet, val, parse_interval(interval), start)
            return
        record = orjson.loads(value)
        if record["kind"] != "value" or not self._keep(record["window_end"]):
            return  # distinct-value summaries are recomputed from the value records
        window = (parse_interval(record["interval"]), record["window_start"])
        values = self.facets.setdefault(record["facet"], {}).setdefault(window, {})
        value = record["value"]
        if value not in values:
            self.keys += 1
            value = self._shared.setdefault(value, value) if isinstance(value, str) else value
        values[value] = (int(record["count"]), bool(record["final"]))

    def _keep(self, window_end: int) -> bool:
        if window_end > self.newest_end:
            self.newest_end = window_end
        return self.retention_ms is None or window_end >= self.newest_end - self.retention_ms

    def _remove_rollup(self, rollup: str, interval: str, start: int, group: dict[str, Any]) -> None:
        interval_s = parse_interval(interval)
        groups = self.rollups.get(rollup, {}).get((interval_s, start))
        entry = groups.pop(tuple(group.values()), None) if groups is not None else None
        if entry is not None:
            self.keys -= 1
            self._drop(entry)
            self.window_cache.drop((rollup, interval_s, start))

    def _remove_facet(self, facet: str, value: Any, interval_s: int, start: int) -> None:
        values = self.facets.get(facet, {}).get((interval_s, start))
        if values is not None and value in values:
            del values[value]
            self.keys -= 1

    def evict(self) -> int:
        """Drop the windows that fell out of retention; returns how many keys went."""
        if self.retention_ms is None:
            return 0
        horizon = self.newest_end - self.retention_ms
        gone = 0
        tables: list[tuple[str | None, dict[WindowKey, Any]]] = [
            *self.rollups.items(),
            *((None, table) for table in self.facets.values()),
        ]
        for rollup, table in tables:
            old = [w for w in table if w[1] + w[0] * SECOND_MS < horizon]
            for window in old:
                removed = table.pop(window)
                if rollup is not None:
                    self.window_cache.evicted((rollup, *window))
                gone += len(removed)
                for item in removed.values():
                    if isinstance(item, Entry):
                        self._drop(item)
        self.keys -= gone
        return gone

    # -- reading ---------------------------------------------------------------------------

    def rollup_window(self, rollup: str, interval_s: int, start: int) -> dict[GroupKey, Entry]:
        """The entries of one rollup window by group ({} when none)."""
        return self.rollups.get(rollup, {}).get((interval_s, start), {})

    def facet_window(self, facet: str, interval_s: int, start: int) -> dict[Any, tuple[int, bool]]:
        """Counts and finality per value of one facet window ({} when none)."""
        return self.facets.get(facet, {}).get((interval_s, start), {})

    def rollup_names(self) -> Iterator[str]:
        """Rollups seen in records."""
        return iter(self.rollups)

    def oldest_start(self) -> int | None:
        """Start of the oldest window held (ms), None when empty."""
        tables: list[dict[WindowKey, Any]] = [*self.rollups.values(), *self.facets.values()]
        starts = [w[1] for table in tables for w in table]
        return min(starts) if starts else None
