"""Stage 2 of the rollups: merge the latest partial of every source partition into upserts.

Partials arrive on an internal topic, routed by rollup key so that one merger
sees every source partition's partial for a key. A merger keeps the latest
partial per source partition (``MergedRollup.offer`` ignores older or equal
ones), so duplicated, replayed or reordered partials cannot change a result.
The internal topic is compacted on (rollup key, source partition): reading a
partition of it from the beginning rebuilds the merger's state after a
restart or a rebalance, with no state of its own to lose.

Keys are routed by rollup, interval and window (not by group). A facet window
is one key: its partials carry the count of every value (one record per
window and flush rather than one per value), and the merger writes a record
for each value whose merged count changed, plus the window's distinct-value
count.

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

from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.compiled import FACET_PREFIX, is_facet
from pipeline.rollups.partials import MergedRollup, RollupKey
from pipeline.rollups.spill import Spill
from pipeline.rollups.windows import SECOND_MS, WindowClock, is_final

#: Key prefix of watermark-only records on the partials topic (never a valid RollupKey encoding).
WATERMARK_KEY = b"__watermark__"


def route(key: RollupKey, partitions: int) -> int:
    """The partials-topic partition of a rollup key: by rollup, interval and window.

    CRC-32 of compact JSON, so it is stable across processes and languages.
    """
    window = orjson.dumps([key.rollup, key.interval, key.window_start])
    return zlib.crc32(window) % partitions


def partial_record(
    encoded_key: bytes, partition: int, partial_bytes: bytes, watermark: int | None
) -> tuple[bytes, bytes]:
    """Key and value of a partial on the partials topic (compacted per key and source partition).

    ``partial_bytes`` is the partial as encoded for its changelog
    (``Partial.to_bytes``). The value is ``{"partial": <partial>, "watermark":
    <ms or null>}``, written around it rather than encoding it a second time.
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
        #: Per facet window: the value counts last written, so that only changed values are.
        self.emitted: dict[bytes, dict[Any, int]] = {}
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
            if is_facet(key.rollup) and key.group:
                return  # a facet partial of the format before one-per-window: nothing to merge it with
            merged = self.merged[encoded] = MergedRollup(
                key, AggregationSet.of(tuple(partial["aggregations"]))
            )
            self.routes[encoded] = route_partition
            self.ends[encoded] = key.window_end
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
        self.merged.discard(key)
        self.routes.pop(key, None)
        self.ends.pop(key, None)
        self.dirty.discard(key)
        self.final.discard(key)
        self.emitted.pop(key, None)

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
        out: list[Upsert] = []
        for key in sorted(self.dirty):
            merged = self.merged[key]
            final = is_final(self.ends[key], low, self.grace_ms)
            turned_final = final and key not in self.final
            if final:
                self.final.add(key)
            if is_facet(merged.key.rollup):
                out.extend(self._facet_upserts(key, merged, final, turned_final, now_ms))
            else:
                out.append(to_upsert(merged, final, now_ms))
        self.dirty.clear()
        if low is not None and low != self._low:
            horizon = low - self.retention_ms
            for key in [k for k, end in self.ends.items() if end < horizon]:
                self._forget(key)
        self._low = low
        return out

    def _facet_upserts(
        self, key: bytes, merged: MergedRollup, final: bool, turned_final: bool, now_ms: int
    ) -> list[Upsert]:
        """One record per value whose count changed (every value once the window turns final),
        and the window's distinct-value count."""
        window: RollupKey = merged.key
        facet = window.rollup[len(FACET_PREFIX) :]
        counts: dict[Any, int] = merged.state()["values"]
        before = self.emitted.get(key, {})
        interval, start, end = window.interval, window.window_start, window.window_end
        out = [
            Upsert(
                "facets",
                orjson.dumps([facet, value, interval, start]),
                {
                    "kind": "value",
                    "facet": facet,
                    "value": value,
                    "interval": interval,
                    "window_start": start,
                    "window_end": end,
                    "count": count,
                    "final": final,
                    "updated_at": now_ms,
                },
            )
            for value, count in counts.items()
            if turned_final or before.get(value) != count
        ]
        if final:
            # Counts no longer change once final (later actions are late); should they, every
            # value is written again, which is correct, only more records.
            self.emitted.pop(key, None)
        else:
            self.emitted[key] = dict(counts)
        summary = {
            "kind": "facet",
            "facet": facet,
            "interval": interval,
            "window_start": start,
            "window_end": end,
            "unique_values": len(counts),
            "final": final,
            "updated_at": now_ms,
        }
        out.append(Upsert("facets", orjson.dumps([facet, None, interval, start]), summary))
        return out


def _same(key: bytes) -> bytes:
    return key


def _dump_merged(merged: MergedRollup) -> bytes:
    return orjson.dumps(merged.to_dict())


def _load_merged(raw: bytes) -> MergedRollup:
    return MergedRollup.from_dict(orjson.loads(raw))


def to_upsert(merged: MergedRollup, final: bool, now_ms: int) -> Upsert:
    """The measure-rollup record of a merged key."""
    return Upsert("rollups", merged.key.encode(), merged.record(updated_at_ms=now_ms, final=final))
