"""Stage 1 of the rollups: offset-stamped partial aggregates per source partition.

The worker that reads a raw partition feeds every enriched action of it to
:meth:`RollupEngine.apply`, in offset order, in the same pass as enrichment.
For each rollup whose filter matches (and for each facet), the event lands in
the :class:`~pipeline.rollups.partials.Partial` of its window and group, which
remembers the highest raw offset applied to it. :meth:`RollupEngine.flush`
returns what must reach the state changelog (partitioned like the raw topic)
before the raw offsets may be committed: the dirty partials, tombstones of
evicted windows, and last a ``meta`` record with the partition's watermark and
the offset up to which everything was applied.

Exactly once in effect: after a crash the new owner loads the changelog
(:meth:`RollupEngine.load`) and the raw partition is replayed from its last
committed offset. Events at or below ``meta.offset`` are skipped whole (their
partials and late counts were flushed before the meta record); later events
are skipped key by key by ``Partial.apply``. Since the watermark is restored
from the same meta record, replayed events are classified (on time, late)
exactly as the first time.

Facets are internal rollups: ``facet:<path>`` counts each value (list
attributes count each element) per hour and per day. The merge stage, which
sees every value of a facet window, also counts the distinct values exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.query.paths import MISSING, compile_path, compile_values
from pipeline.rollups.aggregations import AggregationSet
from pipeline.rollups.config import RollupConfig
from pipeline.rollups.partials import Partial, RollupKey
from pipeline.rollups.windows import SECOND_MS, classify, format_interval, parse_interval, window_start

#: A partial's identity on the hot path: (rollup, interval seconds, window start, group).
#: Cheaper to build and hash than a RollupKey, which is made once per new partial.
SlotKey = tuple[str, int, int, tuple[tuple[str, Any], ...]]

#: Changelog key of a partition's meta record (never a valid RollupKey encoding).
META_KEY = b"__meta__"
FACET_PREFIX = "facet:"
LATE_SUFFIX = ":late"
DEFAULT_FACET_INTERVALS = (3600, 86400)


@dataclass(frozen=True)
class CompiledRollup:
    """A rollup ready for the hot path: predicate, getters and aggregations compiled once."""

    name: str
    matches: Callable[[Any], bool]
    measure: Callable[[Any], Any] | None
    groups: tuple[tuple[str, Callable[[Any], list[Any]]], ...]
    intervals: tuple[int, ...]
    aggregations: AggregationSet
    #: Facets count values: an event without the attribute has none to count.
    #: Rollups group it under a null value instead, so that it is not lost.
    skip_missing: bool = False

    def group_keys(self, event: Any) -> list[tuple[tuple[str, Any], ...]]:
        """Every group the event belongs to: a list attribute gives one group per element."""
        if not self.groups:
            return [()]
        if len(self.groups) == 1:  # the common case, without the cartesian product
            path, values = self.groups[0]
            found = values(event)
            if len(found) == 1:
                return [((path, _scalar(found[0])),)]
            groups: list[tuple[tuple[str, Any], ...]] = [
                ((path, v),) for v in dict.fromkeys(map(_scalar, found))
            ]
            return groups if groups or self.skip_missing else [((path, None),)]
        choices = []
        for path, values in self.groups:
            found = values(event)
            choices.append([(path, v) for v in dict.fromkeys(_scalar(v) for v in found)] or [(path, None)])
        return [tuple(combo) for combo in itertools.product(*choices)]


def _scalar(value: Any) -> Any:
    """Group values are JSON scalars; anything else is grouped by its JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def compile_rollups(config: RollupConfig) -> list[CompiledRollup]:
    """The configured rollups plus the internal facet rollups, compiled."""
    compiled = []
    for spec in config.rollups:
        measure = compile_path(spec.measure) if spec.measure else None
        compiled.append(
            CompiledRollup(
                name=spec.name,
                matches=spec.filter.matches,
                measure=measure,
                groups=tuple((path, compile_values(path)) for path in spec.group_by),
                intervals=tuple(spec.intervals),
                aggregations=AggregationSet.of(tuple(a.name for a in spec.aggregations)),
            )
        )
    # Facets are indexed per hour and per day: finer windows would multiply the
    # state by the number of distinct values for little use.
    intervals = DEFAULT_FACET_INTERVALS
    for facet in config.facets:
        compiled.append(
            CompiledRollup(
                name=FACET_PREFIX + facet.path,
                matches=_always,
                measure=None,
                groups=((facet.path, compile_values(facet.path)),),
                intervals=intervals,
                aggregations=AggregationSet.of(("count",)),
                skip_missing=True,
            )
        )
    return compiled


def _slot(key: RollupKey) -> SlotKey:
    return (key.rollup, parse_interval(key.interval), key.window_start, key.group)


def _always(event: Any) -> bool:
    return True


_LATE_COUNT = AggregationSet.of(("count",))


@dataclass
class PartitionState:
    """Rollup state of one raw partition, as restored from and flushed to the changelog."""

    partition: int
    partials: dict[SlotKey, Partial] = field(default_factory=dict)
    #: Largest accepted event time (ms); None before the first event.
    watermark: int | None = None
    #: Every event at or below this raw offset is in the flushed state.
    offset: int = -1
    #: Highest raw offset seen since the last flush.
    seen: int = -1
    dirty: set[SlotKey] = field(default_factory=set)
    evicted: set[Partial] = field(default_factory=set)


@dataclass(frozen=True)
class Verdict:
    """What became of an event that was not (or not only) aggregated."""

    kind: str  # "late" or "future"
    rollup: str
    interval: str
    window_start: int


class RollupEngine:
    """Stage-1 aggregation for the raw partitions one worker owns."""

    def __init__(self, config: RollupConfig) -> None:
        self.config = config
        self.rollups = compile_rollups(config)
        self.intervals = sorted({i for rollup in self.rollups for i in rollup.intervals})
        self.grace_ms = config.grace_seconds * SECOND_MS
        self.retention_ms = config.retention_seconds * SECOND_MS
        self.partitions: dict[int, PartitionState] = {}
        self.counts = {"applied": 0, "replayed": 0, "late": 0, "future": 0}

    # -- ownership -----------------------------------------------------------------
    def loaded(self, partition: int) -> bool:
        """True once the partition's state was restored (or started empty) here."""
        return partition in self.partitions

    def load(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> PartitionState:
        """Restore a partition from its changelog records (oldest first; None = tombstone)."""
        state = PartitionState(partition)
        for key, value in records:
            if key == META_KEY:
                if value is not None:
                    meta = orjson.loads(value)
                    state.watermark, state.offset = meta["watermark"], meta["offset"]
            elif value is None:
                state.partials.pop(_slot(RollupKey.from_dict(orjson.loads(key))), None)
            else:
                partial = Partial.from_bytes(value)
                state.partials[_slot(partial.key)] = partial
        state.seen = state.offset
        self.partitions[partition] = state
        return state

    def drop(self, partition: int) -> None:
        """Forget a partition this worker no longer owns (its changelog has everything)."""
        self.partitions.pop(partition, None)

    # -- hot path ------------------------------------------------------------------
    def apply(self, partition: int, offset: int, event: dict[str, Any], receive_ms: int) -> list[Verdict]:
        """Aggregate one enriched action read at ``offset``; return its late/future verdicts."""
        state = self.partitions[partition]
        if offset <= state.offset:  # flushed before a crash: everything about it is done
            self.counts["replayed"] += 1
            return []
        state.seen = max(state.seen, offset)
        event_ms = event.get("date")
        if not isinstance(event_ms, int):
            return []
        watermark = state.watermark
        # Window and verdict depend on the interval only: computed once per event.
        windows = {
            interval: (
                classify(event_ms, watermark, self.grace_ms, receive_ms, interval_s=interval),
                window_start(event_ms, interval),
            )
            for interval in self.intervals
        }
        verdicts: list[Verdict] = []
        for rollup in self.rollups:
            if not rollup.matches(event):
                continue
            measure = rollup.measure(event) if rollup.measure else None
            if measure is MISSING:
                measure = None
            groups = None
            for interval in rollup.intervals:
                verdict, start = windows[interval]
                if verdict == "on_time":
                    groups = groups if groups is not None else rollup.group_keys(event)
                    for group in groups:
                        slot = (rollup.name, interval, start, group)
                        self._add(state, slot, rollup.aggregations, offset, measure, event)
                else:
                    verdicts.append(Verdict(verdict, rollup.name, format_interval(interval), start))
                    if verdict == "late":  # counted in its own rollup, so nothing is lost
                        slot = (rollup.name + LATE_SUFFIX, interval, start, ())
                        self._add(state, slot, _LATE_COUNT, offset, None, event)
        future = any(v.kind == "future" for v in verdicts)
        if not future and (watermark is None or event_ms > watermark):
            state.watermark = event_ms
        self.counts["applied"] += 1
        for noted in verdicts:
            self.counts[noted.kind] += 1
        return verdicts

    def _add(
        self,
        state: PartitionState,
        slot: SlotKey,
        aggregations: AggregationSet,
        offset: int,
        measure: Any,
        event: dict[str, Any],
    ) -> None:
        partial = state.partials.get(slot)
        if partial is None:
            key = RollupKey(slot[0], format_interval(slot[1]), slot[2], slot[3])
            partial = state.partials[slot] = Partial(key, state.partition, aggregations)
        if partial.apply(offset, measure, event):
            state.dirty.add(slot)

    # -- flush -----------------------------------------------------------------------
    def evict(self, partition: int) -> int:
        """Drop partials whose window ended more than the retention before the watermark."""
        state = self.partitions[partition]
        if state.watermark is None:
            return 0
        horizon = state.watermark - self.retention_ms
        old = [slot for slot, p in state.partials.items() if p.key.window_end < horizon]
        for slot in old:
            state.evicted.add(state.partials.pop(slot))
            state.dirty.discard(slot)
        return len(old)

    def flush(self, partition: int) -> tuple[list[tuple[Partial, bool]], tuple[bytes, bytes] | None]:
        """The dirty partials (``False``) and evicted ones (``True``: write tombstones), then the meta record.

        The caller writes the first list, waits for every acknowledgement, then
        writes the meta record: a meta record on the changelog therefore always
        means that everything below its offset is there too.
        """
        state = self.partitions[partition]
        self.evict(partition)
        changes = [(state.partials[slot], False) for slot in state.dirty]
        changes.extend((partial, True) for partial in state.evicted)
        for slot in state.dirty:
            state.partials[slot].mark_emitted()
        state.dirty.clear()
        state.evicted.clear()
        if state.seen <= state.offset and not changes:
            return changes, None
        state.offset = state.seen
        meta = orjson.dumps({"offset": state.offset, "watermark": state.watermark})
        return changes, (META_KEY, meta)
