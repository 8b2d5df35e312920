"""Stage 2 of the rollups: merge the latest partial of every source partition into upserts.

Partials arrive on an internal topic, routed by rollup key so that one merger
sees every source partition's partial for a key. A merger keeps the latest
partial per source partition (``MergedRollup.offer`` ignores older or equal
ones), so duplicated, replayed or reordered partials cannot change a result.
The internal topic is compacted on (rollup key, source partition): reading a
partition of it from the beginning rebuilds the merger's state after a
restart or a rebalance, with no state of its own to lose.

Keys are routed by rollup, interval and window (not by group), so the merger
that owns a facet window sees all of its values and counts them exactly.

A window is final once every source partition that has sent partials has
passed the window end plus the grace period (their watermarks travel with the
partials, and with watermark-only records when a quiet partition's watermark
moves on the wall clock: see ``RollupStage.advance_idle``). Output records are
upserts: the latest record per key is the truth.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.rollups.aggregations import AggregationSet
from pipeline.rollups.engine import FACET_PREFIX, LATE_SUFFIX
from pipeline.rollups.partials import MergedRollup, Partial, RollupKey
from pipeline.rollups.spill import Spill
from pipeline.rollups.windows import SECOND_MS, WindowClock, is_final, parse_interval

#: Key prefix of watermark-only records on the partials topic (never a valid RollupKey encoding).
WATERMARK_KEY = b"__watermark__"


def route(key: RollupKey, partitions: int) -> int:
    """The partials-topic partition of a rollup key: by rollup, interval and window.

    CRC-32 of compact JSON, so it is stable across processes and languages.
    """
    window = orjson.dumps([key.rollup, key.interval, key.window_start])
    return zlib.crc32(window) % partitions


def partial_message(partial: Partial, watermark: int | None) -> tuple[bytes, bytes]:
    """Key and value of a partial on the partials topic (compacted per key and source partition)."""
    return partial_record(partial.encoded_key, partial.partition, partial.to_bytes(), watermark)


def partial_record(
    encoded_key: bytes, partition: int, partial_bytes: bytes, watermark: int | None
) -> tuple[bytes, bytes]:
    """``partial_message`` from a partial already encoded (``Partial.to_bytes``) for its changelog.

    The value is ``{"partial": <partial>, "watermark": <ms or null>}``, written
    around the encoded partial rather than encoding it a second time.
    """
    mark = b"null" if watermark is None else str(int(watermark)).encode()
    return (
        encoded_key + b"@" + str(partition).encode(),
        b'{"partial":' + partial_bytes + b',"watermark":' + mark + b"}",
    )


def watermark_record(source_partition: int, watermark: int) -> tuple[bytes, bytes]:
    """Key and value of a watermark-only record: a quiet source partition's watermark moved.

    Written to every partials partition, compacted per source partition, so
    that every merger hears of it without a partial to carry it.
    """
    key = WATERMARK_KEY + b"@" + str(source_partition).encode()
    return key, orjson.dumps({"partition": source_partition, "watermark": watermark})


def tombstone_key(rollup_key: bytes, source_partition: int) -> bytes:
    """The partials-topic key whose tombstone removes an evicted partial."""
    return rollup_key + b"@" + str(source_partition).encode()


@dataclass(frozen=True)
class Upsert:
    """One output record: ``facets`` or ``rollups`` topic, key and value."""

    topic: str
    key: bytes
    value: dict[str, Any]


class Merger:
    """Merged rollups for the partials-topic partitions one worker owns."""

    def __init__(self, grace_seconds: int, retention_seconds: int, spill: Spill | None = None) -> None:
        self.grace_ms = grace_seconds * SECOND_MS
        self.retention_ms = retention_seconds * SECOND_MS
        #: Merged rollups by encoded key; the coldest may live in the spill database.
        self.spill = spill if spill is not None else Spill(None, 0)
        self.merged = self.spill.new_map(_same, _dump_merged, _load_merged, self._end)
        self.routes: dict[bytes, int] = {}
        self.clock = WindowClock()
        self.dirty: set[bytes] = set()
        self.final: set[bytes] = set()
        #: Window end (ms) of every merged key, read without parsing the interval again.
        self.ends: dict[bytes, int] = {}
        #: Keys of each facet window, to count its distinct values without a scan.
        self.facet_windows: dict[tuple[str, str, int], set[bytes]] = {}
        #: The low watermark at the last flush: finality and eviction only move when it does.
        self._low: int | None = None

    def offer(self, value: bytes | None, route_partition: int) -> None:
        """Take one partials-topic record (None = tombstone, nothing to merge).

        Only the partial's key and offset stamp are read here; its state is
        deserialised when the merged record is next written, and never if a newer
        partial from the same source partition replaces it first.
        """
        if value is None:
            return
        data = orjson.loads(value)
        partial = data.get("partial")
        if partial is None:  # a watermark-only record (``watermark_record``)
            self.clock.advance(int(data["partition"]), data["watermark"])
            return
        if data["watermark"] is not None:
            self.clock.advance(int(partial["partition"]), data["watermark"])
        # ``RollupKey.encode`` is the compact JSON of this very dict (same field order).
        encoded = orjson.dumps(partial["key"])
        merged = self.merged.get(encoded)
        if merged is None:
            key = RollupKey.from_dict(partial["key"])
            merged = self.merged[encoded] = MergedRollup(
                key, AggregationSet.of(tuple(partial["aggregations"]))
            )
            self.routes[encoded] = route_partition
            self.ends[encoded] = key.window_end
            if is_facet(key.rollup):
                self.facet_windows.setdefault(_window(key), set()).add(encoded)
        if merged.offer_dict(partial):
            self.dirty.add(encoded)
            self.final.discard(encoded)

    def route_partitions(self) -> set[int]:
        """The partials partitions this merger holds keys of."""
        return set(self.routes.values())

    def drop(self, route_partition: int) -> None:
        """Forget the keys of a partials partition this worker no longer owns."""
        gone = [k for k, q in self.routes.items() if q == route_partition]
        for key in gone:
            self._forget(key)

    def _end(self, key: bytes) -> int:
        return self.ends[key]

    def _forget(self, key: bytes) -> None:
        known = key in self.merged
        self.merged.discard(key)
        self.routes.pop(key, None)
        self.ends.pop(key, None)
        self.dirty.discard(key)
        self.final.discard(key)
        rollup_key = RollupKey.from_dict(orjson.loads(key)) if known else None
        if rollup_key is not None and is_facet(rollup_key.rollup):
            window = _window(rollup_key)
            keys = self.facet_windows.get(window)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.facet_windows[window]

    def low_watermark(self) -> int | None:
        """The smallest watermark of the source partitions heard from."""
        partitions = [int(p) for p in self.clock.to_dict()]
        return self.clock.low_watermark(partitions) if partitions else None

    def flush(self, now_ms: int) -> list[Upsert]:
        """Upserts for what changed and for windows that just became final; evicts old windows."""
        low = self.low_watermark()
        if low != self._low:
            # Finality only changes when the low watermark moves: no scan otherwise.
            for key, end in self.ends.items():
                if key not in self.final and key not in self.dirty and is_final(end, low, self.grace_ms):
                    self.dirty.add(key)
        out = []
        facet_windows: set[tuple[str, str, int]] = set()
        for key in sorted(self.dirty):
            merged = self.merged[key]
            final = is_final(self.ends[key], low, self.grace_ms)
            if final:
                self.final.add(key)
            out.append(to_upsert(merged, final, now_ms))
            if is_facet(merged.key.rollup):
                facet_windows.add(_window(merged.key))
        self.dirty.clear()
        if facet_windows:
            out.extend(self._facet_summaries(facet_windows, low, now_ms))
        if low is not None and low != self._low:
            horizon = low - self.retention_ms
            for key in [k for k, end in self.ends.items() if end < horizon]:
                self._forget(key)
        self._low = low
        return out

    def _facet_summaries(
        self, windows: set[tuple[str, str, int]], low: int | None, now_ms: int
    ) -> list[Upsert]:
        """The distinct-value count of each facet window that changed."""
        out = []
        for rollup, interval, start in sorted(windows):
            keys = self.facet_windows.get((rollup, interval, start), set())
            end = start + parse_interval(interval) * SECOND_MS
            facet = rollup[len(FACET_PREFIX) :]
            final = is_final(end, low, self.grace_ms)
            record = {
                "kind": "facet",
                "facet": facet,
                "interval": interval,
                "window_start": start,
                "window_end": end,
                "unique_values": len(keys),
                "final": final,
                "updated_at": now_ms,
            }
            out.append(Upsert("facets", orjson.dumps([facet, None, interval, start]), record))
        return out


def _same(key: bytes) -> bytes:
    return key


def _dump_merged(merged: MergedRollup) -> bytes:
    return orjson.dumps(merged.to_dict())


def _load_merged(raw: bytes) -> MergedRollup:
    return MergedRollup.from_dict(orjson.loads(raw))


def _window(key: RollupKey) -> tuple[str, str, int]:
    return (key.rollup, key.interval, key.window_start)


def is_facet(rollup: str) -> bool:
    """True for the internal rollups of the facet index (their late counts are plain rollups)."""
    return rollup.startswith(FACET_PREFIX) and not rollup.endswith(LATE_SUFFIX)


def to_upsert(merged: MergedRollup, final: bool, now_ms: int) -> Upsert:
    """The facet-index or rollup record of a merged key."""
    key: RollupKey = merged.key
    record = merged.record(updated_at_ms=now_ms, final=final)
    if is_facet(key.rollup):
        facet = key.rollup[len(FACET_PREFIX) :]
        facet_value = key.group[0][1]
        value = {
            "kind": "value",
            "facet": facet,
            "value": facet_value,
            "interval": key.interval,
            "window_start": key.window_start,
            "window_end": key.window_end,
            "count": record["aggregations"]["count"],
            "final": final,
            "updated_at": now_ms,
        }
        return Upsert("facets", orjson.dumps([facet, facet_value, key.interval, key.window_start]), value)
    return Upsert("rollups", key.encode(), record)
