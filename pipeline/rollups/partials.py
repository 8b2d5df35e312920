"""Exactly-once-in-effect rollups from at-least-once Kafka: partials and their merge.

The shape (see DESIGN.md, "Correctness under failure"):

1. Each worker aggregates the raw partitions it owns into ``Partial`` states, one
   per (rollup key, source partition), kept in a changelog-backed table. A
   partial remembers ``last_offset``, the highest raw offset applied to it;
   after a crash the raw partition is re-read from the last committed offset and
   ``Partial.apply`` skips every event at or below ``last_offset``, key by key.
   Replays therefore never double count, provided the table state reaches its
   changelog before the source offset is committed.
2. Dirty partials are emitted, whole, to an internal topic keyed by rollup key.
   ``MergedRollup`` keeps only the latest partial per source partition (highest
   ``last_offset``) and merges them. Since a partial with a higher offset always
   includes everything an older one had, duplicated, reordered or stale
   emissions cannot change the merged result.

Serialized partial (table value and internal-topic value)::

    {"key": {"rollup": "cart_value_by_country", "interval": "1h",
             "window_start": 1764338400000, "group": {"geo.country": "France"}},
     "partition": 3, "last_offset": 1041, "emitted_offset": 990,
     "aggregations": ["count", "sum", "avg", "p50", "cardinality(usr.id)"],
     "state": {"count": 12, "sum": {"n": 11, "sum": 463.3, "comp": 0.0},
               "ddsketch": {...}, "hll": {"usr.id": "<base64>"}}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.aggregations import State
from pipeline.rollups.windows import SECOND_MS, parse_interval

#: A group-by value: a JSON scalar (None when the event lacks the attribute).
GroupValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class RollupKey:
    """Identity of one rollup row: rollup name, interval, window and group values."""

    rollup: str
    interval: str
    window_start: int
    #: (path, value) pairs in the rollup's group_by order.
    group: tuple[tuple[str, GroupValue], ...] = ()

    def __post_init__(self) -> None:
        size_ms = parse_interval(self.interval) * SECOND_MS
        if self.window_start % size_ms:
            raise ValueError(f"window_start {self.window_start} is not aligned to {self.interval}")
        for path, value in self.group:
            if value is not None and not isinstance(value, str | int | float | bool):
                kind = type(value).__name__
                raise ValueError(f"group value for {path!r} must be a JSON scalar, got {kind}")

    @property
    def window_end(self) -> int:
        """End of the window (ms, exclusive)."""
        return self.window_start + parse_interval(self.interval) * SECOND_MS

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form; ``group`` is an object in group_by order."""
        return {
            "rollup": self.rollup,
            "interval": self.interval,
            "window_start": self.window_start,
            "group": dict(self.group),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RollupKey:
        """Inverse of ``to_dict``."""
        return cls(data["rollup"], data["interval"], int(data["window_start"]), tuple(data["group"].items()))

    def encode(self) -> bytes:
        """Kafka message key: the compact JSON of ``to_dict()``, stable for equal keys."""
        return orjson.dumps(self.to_dict())


class Partial:
    """The aggregate state of one rollup key for ONE source partition."""

    __slots__ = ("_encoded_key", "aggregations", "emitted_offset", "key", "last_offset", "partition", "state")

    def __init__(
        self,
        key: RollupKey,
        partition: int,
        aggregations: AggregationSet,
        state: State | None = None,
        last_offset: int = -1,
        emitted_offset: int = -1,
    ) -> None:
        self.key = key
        self.partition = partition
        self.aggregations = aggregations
        self.state = state if state is not None else aggregations.initialize()
        #: Highest source offset applied; -1 before the first event.
        self.last_offset = last_offset
        #: ``last_offset`` at the last emission, so a restored partial knows it is dirty.
        self.emitted_offset = emitted_offset
        self._encoded_key: bytes | None = None

    @property
    def encoded_key(self) -> bytes:
        """``key.encode()``, computed once (the key never changes)."""
        if self._encoded_key is None:
            self._encoded_key = self.key.encode()
        return self._encoded_key

    def add_many(
        self,
        measures: list[Any] | None,
        events: list[dict[str, Any]],
        last_offset: int,
        canonical: dict[str, str] | None = None,
        derived: dict[str, Any] | None = None,
    ) -> None:
        """Add several new events at once, the last one read at ``last_offset``; equal to ``apply`` each.

        The caller guarantees the events are above ``last_offset`` of this
        partial (no replay among them). ``canonical`` and ``derived`` carry
        work over to other partials (see ``AggregationSet.add_many``).
        """
        self.aggregations.add_many(self.state, measures, events, canonical, derived)
        self.last_offset = max(self.last_offset, last_offset)

    def add_counted(self, events: int, counts: list[dict[Any, int]], last_offset: int) -> None:
        """``add_many`` for a facet window, from value counts made beforehand (see AggregationSet)."""
        self.aggregations.add_counted(self.state, events, counts)
        self.last_offset = max(self.last_offset, last_offset)

    def add_count(self, count: int, last_offset: int) -> None:
        """``add_many`` for a count-only partial: ``count`` new events, the last one at ``last_offset``."""
        self.state["count"] += count
        self.last_offset = max(self.last_offset, last_offset)

    def apply(self, offset: int, measure: Any, event: dict[str, Any]) -> bool:
        """Add the event at source ``offset``; False (and no change) if it was already applied.

        Offsets of one partition are processed in increasing order, so anything at
        or below ``last_offset`` is a replay after a crash or a rebalance.
        """
        if offset <= self.last_offset:
            return False
        self.aggregations.add(self.state, measure, event)
        self.last_offset = offset
        return True

    def mark_emitted(self) -> None:
        """Record that the current state was emitted to the partials topic."""
        self.emitted_offset = self.last_offset

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the changelog table and the partials topic."""
        return {
            "key": self.key.to_dict(),
            "partition": self.partition,
            "last_offset": self.last_offset,
            "emitted_offset": self.emitted_offset,
            "aggregations": list(self.aggregations.names),
            "state": self.aggregations.dump(self.state),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partial:
        """Inverse of ``to_dict``."""
        aggregations = AggregationSet.of(tuple(data["aggregations"]))
        return cls(
            RollupKey.from_dict(data["key"]),
            int(data["partition"]),
            aggregations,
            aggregations.load(data["state"]),
            int(data["last_offset"]),
            int(data.get("emitted_offset", -1)),
        )

    def to_bytes(self) -> bytes:
        """orjson encoding of ``to_dict()``, assembled around the cached key and aggregation names."""
        state = self.state
        if self.aggregations.counts_only:
            state_bytes = b'{"count":' + str(int(state["count"])).encode() + b"}"
        else:
            state_bytes = orjson.dumps(self.aggregations.dump(state))
        return b"".join(
            (
                b'{"key":',
                self.encoded_key,
                b',"partition":',
                str(self.partition).encode(),
                b',"last_offset":',
                str(self.last_offset).encode(),
                b',"emitted_offset":',
                str(self.emitted_offset).encode(),
                b',"aggregations":',
                self.aggregations.encoded_names,
                b',"state":',
                state_bytes,
                b"}",
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Partial:
        """Inverse of ``to_bytes``."""
        return cls.from_dict(orjson.loads(raw))


class MergedRollup:
    """The latest partial of every source partition for one rollup key, and their merge."""

    __slots__ = ("_merged", "_raw", "aggregations", "key", "partials")

    def __init__(self, key: RollupKey, aggregations: AggregationSet) -> None:
        self.key = key
        self.aggregations = aggregations
        #: Latest partial per source partition.
        self.partials: dict[int, Partial] = {}
        #: Newer partials offered in their JSON form (``Partial.to_dict``), read only when needed:
        #: a partial superseded before the next merge is never deserialised.
        self._raw: dict[int, tuple[int, dict[str, Any]]] = {}
        self._merged: State | None = None

    def stamp(self, partition: int) -> int:
        """``last_offset`` of the latest partial kept for ``partition`` (-1 when none)."""
        raw = self._raw.get(partition)
        if raw is not None:
            return raw[0]
        current = self.partials.get(partition)
        return -1 if current is None else current.last_offset

    def offer(self, partial: Partial) -> bool:
        """Keep ``partial`` if it is newer than what its partition sent before; True if kept.

        An equal or lower ``last_offset`` means a duplicate or a stale emission,
        which holds no event the kept one lacks. The merged rollup takes ownership
        of the partial: do not apply events to it afterwards.
        """
        if partial.key != self.key:
            raise ValueError(f"partial for {partial.key} offered to the rollup {self.key}")
        if partial.aggregations.names != self.aggregations.names:
            raise ValueError(
                f"partial aggregations {list(partial.aggregations.names)} differ from "
                f"{list(self.aggregations.names)} for {self.key}"
            )
        if partial.last_offset <= self.stamp(partial.partition):
            return False
        self._raw.pop(partial.partition, None)
        self.partials[partial.partition] = partial
        self._merged = None
        return True

    def offer_dict(self, data: dict[str, Any]) -> bool:
        """``offer`` for a partial in its ``Partial.to_dict`` form, deserialised only when merged.

        The caller has checked that ``data`` is for this key (the merger finds
        the rollup by the encoded key); aggregations are checked when it is read.
        """
        partition, last_offset = int(data["partition"]), int(data["last_offset"])
        if last_offset <= self.stamp(partition):
            return False
        self._raw[partition] = (last_offset, data)
        self._merged = None
        return True

    def _load_raw(self) -> None:
        """Deserialise the partials offered as dicts (and check them as ``offer`` would)."""
        raw, self._raw = self._raw, {}
        names = list(self.aggregations.names)
        for stamp, data in raw.values():
            if data["aggregations"] != names:
                raise ValueError(
                    f"partial aggregations {data['aggregations']} differ from {names} for {self.key}"
                )
            # The key was matched by its encoding: no need to parse it again.
            partial = Partial(
                self.key,
                int(data["partition"]),
                self.aggregations,
                self.aggregations.load(data["state"]),
                stamp,
                int(data.get("emitted_offset", -1)),
            )
            self.partials[partial.partition] = partial

    def state(self) -> State:
        """The merge of every partition's latest state, in partition order (deterministic)."""
        if self._merged is None:
            if self._raw:
                self._load_raw()
            self._merged = self.aggregations.merge_all(
                [self.partials[partition].state for partition in sorted(self.partials)]
            )
        return self._merged

    def offsets(self) -> dict[int, int]:
        """``last_offset`` per source partition: how far each partition is reflected."""
        return {p: self.stamp(p) for p in sorted(set(self.partials) | set(self._raw))}

    def record(self, *, updated_at_ms: int, final: bool) -> dict[str, Any]:
        """The measure-rollup upsert record for this key.

        ``final`` is decided by the caller from the low watermark over all source
        partitions (``windows.is_final``), which this one key cannot know.
        """
        state = self.state()
        return {
            "rollup": self.key.rollup,
            "interval": self.key.interval,
            "window_start": self.key.window_start,
            "window_end": self.key.window_end,
            "group": dict(self.key.group),
            "aggregations": self.aggregations.result(state),
            "sketches": self.aggregations.sketches(state),
            "final": final,
            "updated_at": updated_at_ms,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the merge stage's own changelog table."""
        if self._raw:
            self._load_raw()
        return {
            "key": self.key.to_dict(),
            "aggregations": list(self.aggregations.names),
            "partials": [self.partials[p].to_dict() for p in sorted(self.partials)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MergedRollup:
        """Inverse of ``to_dict``."""
        merged = cls(RollupKey.from_dict(data["key"]), AggregationSet.of(tuple(data["aggregations"])))
        for item in data["partials"]:
            merged.offer(Partial.from_dict(item))
        return merged
