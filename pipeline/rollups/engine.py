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

Actions are aggregated in batches: ``apply`` decides at once what depends on
the order of events (replay, lateness against the watermark, the watermark
itself) and queues a copy of what the rollups read of the action
(``compile_projection``: the rest is freed at once); once ``AGGREGATE_AT`` actions of a partition
are queued, and at each ``flush``, ``aggregate`` groups the queued actions by
partial and updates each partial once for all of them. A partial's state and
offset stamp are the same as with one update per action; only ``flush``
hands partials out.

Exactly once in effect: after a crash the new owner loads the changelog
(:meth:`RollupEngine.load`) and the raw partition is replayed from its last
committed offset. Events at or below ``meta.offset`` are skipped whole (their
partials and late counts were flushed before the meta record); later events
are skipped key by key by ``Partial.apply``. Since the watermark is restored
from the same meta record, replayed events are classified (on time, late)
exactly as the first time. Partials after the last meta record come from a
flush that may have been cut short before they reached the partials topic:
a restore marks them dirty, so that they are sent again.

Facets are internal rollups: ``facet:<path>`` has one partial per window (per
hour and per day) that counts each value (list attributes count each
element; see ``attribute_aggregations.ValueCounts``). The merge stage turns the merged
counts into one facet-index record per value, and counts the distinct values.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.query.paths import compile_projection
from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.batch import merged_indexes, rollup_slots, window_unit
from pipeline.rollups.compiled import (
    DUPLICATES,
    LATE_SUFFIX,
    SlotKey,
    compile_rollups,
    is_facet,
)
from pipeline.rollups.config import RollupConfig
from pipeline.rollups.partials import Partial, RollupKey
from pipeline.rollups.spill import Spill
from pipeline.rollups.windows import (
    SECOND_MS,
    classify,
    format_interval,
    parse_interval,
    window_start,
)

#: A queued action: raw offset, the copy of what the rollups read of the enriched action, and the
#: intervals (seconds) it is late for (None: none).
Pending = tuple[int, dict[str, Any], frozenset[int] | None]

#: Changelog key of a partition's meta record (never a valid RollupKey encoding).
META_KEY = b"__meta__"


def _slot_end(slot: SlotKey) -> int:
    """The window end (ms) of a slot: partials of windows that end first spill first."""
    return slot[2] + slot[1] * SECOND_MS


def _slot(key: RollupKey) -> SlotKey:
    return (key.rollup, parse_interval(key.interval), key.window_start, key.group)


_LATE_COUNT = AggregationSet.of(("count",))


@dataclass
class PartitionState:
    """Rollup state of one raw partition, as restored from and flushed to the changelog."""

    partition: int
    #: A SpillMap made by the engine: the coldest partials may live in the spill database.
    partials: Any = field(default_factory=dict)
    #: Largest accepted event time (ms); None before the first event.
    watermark: int | None = None
    #: Every event at or below this raw offset is in the flushed state.
    offset: int = -1
    #: Highest raw offset seen since the last flush.
    seen: int = -1
    dirty: set[SlotKey] = field(default_factory=set)
    evicted: set[Partial] = field(default_factory=set)
    #: Actions applied but not aggregated yet, in offset order.
    pending: list[Pending] = field(default_factory=list)
    #: No partial's window ends before this (ms): eviction has nothing to do below it.
    earliest_end: int | None = None
    #: The highest offset stamp read in a restore (of partials kept or replaced later): actions up
    #: to it may be in some partial already.
    replay_until: int = -1


@dataclass(frozen=True)
class Verdict:
    """What became of an event that was not (or not only) aggregated."""

    kind: str  # "late"
    rollup: str
    interval: str
    window_start: int


class RollupEngine:
    """Stage-1 aggregation for the raw partitions one worker owns."""

    #: Queued actions of a partition that are aggregated at once, without waiting for the flush.
    #: Held longer, the actions' objects fall out of the CPU caches and survive into older
    #: garbage-collector generations: measured, a worker going through a backlog used up to
    #: 15 % less CPU per action (dated over 10 s; little change over an hour) and 20-45 % less
    #: memory than when aggregating at each flush only
    #: (flushes come every 5 s then); the partials a flush writes are the same. Rollups on/off
    #: over 150,000 actions (bench/rollups.py, 2 runs each): with actions dated over 30 s, 0.61 at
    #: 1,000, 0.58-0.67 at 250, 0.69 at 100; dated over an hour (fewer actions per partial),
    #: 0.53, 0.51 and 0.48. 250 is a compromise between the two, within the runs' noise of both.
    AGGREGATE_AT = 250

    def __init__(
        self, config: RollupConfig, spill: Spill | None = None, aggregate_at: int = AGGREGATE_AT
    ) -> None:
        self.config = config
        self.aggregate_at = aggregate_at
        #: Where partials go when more than its capacity are in memory (capacity 0: never).
        self.spill = spill if spill is not None else Spill(None, 0)
        self.rollups = compile_rollups(config)
        #: Queued actions are held as copies of what the rollups read (see ``compile_projection``).
        self.project = compile_projection(["date", *(path for r in self.rollups for path in r.paths)])
        self.intervals = sorted({i for rollup in self.rollups for i in rollup.intervals})
        self.units = {rollup.name: window_unit(list(rollup.intervals)) for rollup in self.rollups}
        self.grace_ms = config.grace_seconds * SECOND_MS
        self.retention_ms = config.retention_seconds * SECOND_MS
        self.partitions: dict[int, PartitionState] = {}
        self.counts = {"applied": 0, "replayed": 0, "late": 0, "duplicates": 0}

    # -- ownership -----------------------------------------------------------------
    def loaded(self, partition: int) -> bool:
        """True once the partition's state was restored (or started empty) here."""
        return partition in self.partitions

    def restoring(self, partition: int) -> Restore:
        """Start restoring a partition from its changelog, records given as they are read.

        The partition's current state is dropped at once: until ``Restore.finish``,
        it is not loaded here.
        """
        self.drop(partition)
        return Restore(self, partition)

    def drop(self, partition: int) -> None:
        """Forget a partition this worker no longer owns (its changelog has everything)."""
        state = self.partitions.pop(partition, None)
        if state is not None:
            self.spill.forget(state.partials)

    # -- hot path ------------------------------------------------------------------
    def apply(self, partition: int, offset: int, event: dict[str, Any], receive_ms: int) -> list[Verdict]:
        """Take one enriched action read at ``offset``; return its late verdicts.

        Replay, lateness and the watermark are decided here, in offset order; the
        action (a copy of what the rollups read of it) is queued and aggregated with the others queued (at
        ``AGGREGATE_AT`` of them, or at the next ``flush``).
        """
        state = self.partitions[partition]
        if offset <= state.offset:  # flushed before a crash: everything about it is done
            self.counts["replayed"] += 1
            return []
        if offset > state.seen:
            state.seen = offset
        event_ms = event.get("date")
        if not isinstance(event_ms, int):
            return []
        watermark = state.watermark
        self.counts["applied"] += 1
        # An action dated further ahead than FUTURE_TOLERANCE_MS never gets here: the
        # processor made it a bad row, with the same receive time (pipeline/process.py).
        event = self.project(event)
        if watermark is None or event_ms + self.grace_ms >= watermark:
            # Every window ends after the event, so none of them is final: on time everywhere.
            if watermark is None or event_ms > watermark:
                state.watermark = event_ms
            self._queue(state, (offset, event, None))
            return []
        late = frozenset(
            interval
            for interval in self.intervals
            if classify(event_ms, watermark, self.grace_ms, receive_ms, interval_s=interval) == "late"
        )
        self._queue(state, (offset, event, late or None))
        verdicts = [
            Verdict("late", rollup.name, format_interval(interval), window_start(event_ms, interval))
            for rollup in self.rollups
            if late and rollup.matches(event)
            for interval in rollup.intervals
            if interval in late
        ]
        self.counts["late"] += len(verdicts)
        return verdicts

    def duplicate(self, partition: int, offset: int, event_ms: int) -> None:
        """Count a copy of an action seen before (dropped unenriched) in the ``duplicates`` windows.

        A copy is not enriched, so it has no groups and no filter applies: it is
        counted per window of every configured interval under the rollup
        :data:`DUPLICATES` (no group), where consumers find how many copies the
        pipeline dropped.
        """
        state = self.partitions[partition]
        if offset <= state.offset:
            return
        if offset > state.seen:
            state.seen = offset
        self.counts["duplicates"] += 1
        for interval in self.intervals:
            slot: SlotKey = (DUPLICATES, interval, window_start(event_ms, interval), ())
            if self._partial(state, slot, _LATE_COUNT).apply(offset, None, {}):
                state.dirty.add(slot)

    def _queue(self, state: PartitionState, item: Pending) -> None:
        """Queue an action; aggregate the partition's queue once ``aggregate_at`` actions wait."""
        state.pending.append(item)
        if len(state.pending) >= self.aggregate_at:
            self.aggregate(state.partition)

    def aggregate(self, partition: int) -> None:
        """Add the queued actions of a partition to their partials, one update per partial."""
        state = self.partitions[partition]
        pending = state.pending
        if not pending:
            return
        state.pending = []
        if pending[0][0] <= state.replay_until:
            # Right after a restore, some partials may hold some of these actions
            # already: those actions go one by one through the offset check.
            cut = bisect_right([offset for offset, _, _ in pending], state.replay_until)
            for offset, event, late in pending[:cut]:
                self._aggregate_one(state, offset, event, late)
            pending = pending[cut:]
            if not pending:
                return
        state.replay_until = -1  # every later action is new to every partial
        self._aggregate_batch(state, pending)

    def _aggregate_batch(self, state: PartitionState, pending: list[Pending]) -> None:
        """The batched path: every action is above every partial's offset stamp."""
        events = [event for _, event, _ in pending]
        late = [lateness for _, _, lateness in pending]
        # Window ids per rollup unit: facets (1h, 1d) need far fewer buckets than 1m rollups.
        window_ids: dict[int, list[int]] = {}
        # A partial includes every action of the partition up to the last one queued
        # that reached it, and none after: its stamp is the offset of that action.
        offsets = [offset for offset, _, _ in pending]
        canonical: dict[str, str] = {}  # cardinality item texts of strings, for the whole pass
        # Buckets of the rollups without filter or group (the facets), per window unit: alike for all.
        shared: dict[int, Any] = {}
        # The actions of such a bucket, listed once for all the facets that count values in it.
        listed: dict[int, tuple[list[int], list[dict[str, Any]]]] = {}
        for rollup in self.rollups:
            late_name = rollup.name + LATE_SUFFIX
            unit = self.units[rollup.name]
            ids = window_ids.get(unit)
            if ids is None:
                ids = window_ids[unit] = [event["date"] // unit for event in events]
            slots = rollup_slots(rollup, events, ids, late, unit, LATE_SUFFIX, shared)
            counter = rollup.aggregations.value_counter
            # A facet's value counts per bucket of actions, made once: the buckets of an
            # hour are shared by the hour's window and the day's.
            counted: dict[int, dict[Any, int]] = {}
            # Keyed by the ids of bucket lists that ``slots`` keeps alive for the whole loop.
            prepared: dict[tuple[int, ...], tuple[list[int], list[Any], Any, dict[str, Any]]] = {}
            for slot, lists in slots.items():
                partial = self._partial(
                    state, slot, _LATE_COUNT if slot[0] == late_name else rollup.aggregations
                )
                if counter is not None and partial.aggregations is rollup.aggregations:
                    counts = []
                    for indexes in lists:
                        found = counted.get(id(indexes))
                        if found is None:
                            found = counted[id(indexes)] = {}
                            entry = listed.get(id(indexes))
                            if entry is None:
                                # The entry keeps ``indexes`` alive, so that its id is not reused.
                                entry = listed[id(indexes)] = (indexes, [events[i] for i in indexes])
                            counter.count_events(found, entry[1])
                        counts.append(found)
                    last = max(indexes[-1] for indexes in lists)
                    partial.add_counted(sum(map(len, lists)), counts, offsets[last])
                elif partial.aggregations.counts_only:
                    last = max(indexes[-1] for indexes in lists)
                    partial.add_count(sum(map(len, lists)), offsets[last])
                else:
                    # The windows of the rollup's intervals mostly get the same buckets (the
                    # same lists): their actions, measures and derived values are made once.
                    same = tuple(map(id, lists))
                    made = prepared.get(same)
                    if made is None:
                        indexes = merged_indexes(lists)
                        batch = [events[i] for i in indexes]
                        if rollup.measure_many is not None:
                            measures = rollup.measure_many(batch)
                        elif rollup.measure is not None:
                            measures = [rollup.measure(e) for e in batch]
                        else:
                            measures = None
                        made = prepared[same] = (indexes, batch, measures, {})
                    indexes, batch, measures, derived = made
                    partial.add_many(measures, batch, offsets[indexes[-1]], canonical, derived)
                state.dirty.add(slot)

    def _aggregate_one(
        self, state: PartitionState, offset: int, event: dict[str, Any], late: frozenset[int] | None
    ) -> None:
        """The one-action path, with the offset check of every partial (``Partial.apply``)."""
        event_ms = event["date"]
        for rollup in self.rollups:
            if not rollup.matches(event):
                continue
            measure = rollup.measure(event) if rollup.measure else None
            groups = None
            for interval in rollup.intervals:
                start = window_start(event_ms, interval)
                if late is not None and interval in late:
                    slot: SlotKey = (rollup.name + LATE_SUFFIX, interval, start, ())
                    if self._partial(state, slot, _LATE_COUNT).apply(offset, None, event):
                        state.dirty.add(slot)
                    continue
                groups = groups if groups is not None else rollup.group_keys(event)
                for group in groups:
                    slot = (rollup.name, interval, start, group)
                    if self._partial(state, slot, rollup.aggregations).apply(offset, measure, event):
                        state.dirty.add(slot)

    @staticmethod
    def _partial(state: PartitionState, slot: SlotKey, aggregations: AggregationSet) -> Partial:
        """The partial of ``slot``, created empty when the partition has none yet."""
        partial = state.partials.get(slot)
        if partial is None:
            key = RollupKey(slot[0], format_interval(slot[1]), slot[2], slot[3])
            partial = state.partials[slot] = Partial(key, state.partition, aggregations)
            end = slot[2] + slot[1] * SECOND_MS
            if state.earliest_end is None or end < state.earliest_end:
                state.earliest_end = end
        return partial

    def unflushed(self, partition: int) -> bool:
        """True when the partition holds actions or partials that are not on its changelog yet."""
        state = self.partitions.get(partition)
        return state is not None and bool(
            state.pending or state.dirty or state.evicted or state.seen > state.offset
        )

    def advance_idle(self, partition: int, watermark: int) -> tuple[bytes, bytes] | None:
        """Move a quiet partition's watermark up to ``watermark``; the meta record to write, or None.

        Only a partition whose state is all flushed moves (no queued, dirty or
        evicted partials, nothing seen above the flushed offset): the meta record
        then pairs the new watermark with an offset that covers everything, so a
        replay after a crash classifies later actions against the same watermark.
        A partition that never saw an action holds nothing back and stays as it is.
        """
        state = self.partitions.get(partition)
        if (
            state is None
            or state.watermark is None
            or watermark <= state.watermark
            or self.unflushed(partition)
        ):
            return None
        state.watermark = watermark
        return META_KEY, orjson.dumps({"offset": state.offset, "watermark": watermark})

    # -- flush -----------------------------------------------------------------------
    def evict(self, partition: int) -> int:
        """Drop partials whose window ended more than the retention before the watermark."""
        state = self.partitions[partition]
        if state.watermark is None:
            return 0
        horizon = state.watermark - self.retention_ms
        if state.earliest_end is not None and state.earliest_end >= horizon:
            return 0  # the common case: no window old enough, no scan
        old = [slot for slot in state.partials if slot[2] + slot[1] * SECOND_MS < horizon]
        for slot in old:
            state.evicted.add(state.partials.pop(slot))
            state.dirty.discard(slot)
        state.earliest_end = min((s[2] + s[1] * SECOND_MS for s in state.partials), default=None)
        return len(old)

    def flush(self, partition: int) -> tuple[list[tuple[Partial, bool]], tuple[bytes, bytes] | None]:
        """The dirty partials (``False``) and evicted ones (``True``: write tombstones), then the meta record.

        The caller writes the first list, waits for every acknowledgement, then
        writes the meta record: a meta record on the changelog therefore always
        means that everything below its offset is there too.
        """
        state = self.partitions[partition]
        self.aggregate(partition)
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


class Restore:
    """A partition's state rebuilt from its changelog, records added as they are read.

    The spill budget holds during the restore too, not only after it: a
    changelog may carry more partials than fit in memory (a tenth of the budget
    over it at most), and its records need not be in memory all at once.
    """

    def __init__(self, engine: RollupEngine, partition: int) -> None:
        self.engine = engine
        spill = engine.spill
        self.partials = spill.new_map(orjson.dumps, Partial.to_bytes, Partial.from_bytes, _slot_end)
        self.state = PartitionState(partition, self.partials)
        # Partials written after the last meta record belong to a flush that may not have
        # completed: their copy on the partials topic may be missing. They are sent again.
        self.unconfirmed: set[SlotKey] = set()
        self.every = min(max(spill.capacity // 10, 1), 1000) if spill.capacity > 0 else 0
        self.restored = 0
        # Actions up to the highest stamp read may be in some partial already. Stamps of
        # partials removed later in the changelog count too: a higher bound is only slower.
        self.replay_until = -1
        self.closed = False

    def add(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Take the next records of the changelog (oldest first; None = tombstone)."""
        state, partials, unconfirmed = self.state, self.partials, self.unconfirmed
        for key, value in records:
            if key == META_KEY:
                if value is not None:
                    meta = orjson.loads(value)
                    state.watermark, state.offset = meta["watermark"], meta["offset"]
                    unconfirmed.clear()
            elif value is None:
                slot = _slot(RollupKey.from_dict(orjson.loads(key)))
                partials.discard(slot)
                unconfirmed.discard(slot)
            else:
                partial = Partial.from_bytes(value)
                slot = _slot(partial.key)
                if slot[3] and is_facet(slot[0]):
                    continue  # a facet partial of the format before one-per-window
                partials[slot] = partial
                unconfirmed.add(slot)
                if partial.last_offset > self.replay_until:
                    self.replay_until = partial.last_offset
                self.restored += 1
                if self.every and self.restored % self.every == 0:
                    self.engine.spill.balance()

    def finish(self) -> PartitionState:
        """Install the restored state in the engine (the partition is loaded from now on)."""
        self._close()
        self.engine.drop(self.state.partition)  # whatever was installed meanwhile
        state = self.state
        state.dirty = self.unconfirmed
        state.seen = state.offset
        state.replay_until = self.replay_until
        state.earliest_end = min((_slot_end(s) for s in self.partials), default=None)
        self.engine.partitions[state.partition] = state
        self.engine.spill.balance()
        return state

    def abandon(self) -> None:
        """Drop what was restored so far: the partition stays unloaded."""
        self._close()
        self.engine.spill.forget(self.partials)

    def _close(self) -> None:
        if self.closed:
            raise RuntimeError(f"the restore of partition {self.state.partition} was finished or abandoned")
        self.closed = True
