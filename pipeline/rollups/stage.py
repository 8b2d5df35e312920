"""The rollup stages on Kafka: state changelog, partials topic, merge agent, upserts.

The logic lives in :mod:`pipeline.rollups.engine` (stage 1) and
:mod:`pipeline.rollups.merge` (stage 2); this module moves their records
between Kafka topics in the order that makes them exact under failure:

1. the enrich agent calls :meth:`RollupStage.prepare` for a batch (restoring the
   state of raw partitions this worker has just been given), :meth:`apply` for
   each enriched action, and awaits :meth:`flush` before its events are
   acknowledged: dirty partials go to the state changelog (same partition as the
   raw topic) and to the partials topic, and only once Kafka has them all does
   the partition's meta record follow;
2. the merge agent reads the partials topic and writes facet-index and rollup
   upserts (compacted topics).

Ownership changes are detected by consumer generation: a raw partition seen
with a new generation is restored from its changelog again, since another
worker may have advanced it meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.clock import now_ms
from pipeline.consume import make_reader, topic_partitions
from pipeline.outputs import Outputs, PartitionWriters
from pipeline.rollups.config import RollupConfig
from pipeline.rollups.engine import PartitionState, Restore, RollupEngine, Verdict
from pipeline.rollups.merge import Merger, partial_record, route, tombstone_key, watermark_record
from pipeline.rollups.spill import Spill, spill_folder
from pipeline.settings import Settings
from pipeline.topics import FACETS, LATE, PARTIALS, ROLLUPS, STATE

log = logging.getLogger(__name__)

#: Records of one partition as read: (key, value), value None for a tombstone.
Chunk = list[tuple[bytes, bytes | None]]


class TopicReader:
    """Reads partitions of a topic from their beginning to their current end."""

    #: Broker-side fetch wait: reads stop at a known end, so long polls only delay them
    #: (measured: 1.0 s per re-assigned partition with the 500 ms default, 0.1 s with 50 ms).
    MAX_WAIT_MS = 20

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        # One read at a time: a read re-assigns the consumer to its partitions.
        self._lock = asyncio.Lock()

    async def read_each(
        self, topic: str, partitions: Iterable[int], take: Callable[[int, Chunk], None]
    ) -> None:
        """Every (key, value) of ``partitions``, oldest first, up to their end offsets at call time.

        The records are handed over as they are fetched, ``take(partition, records)``:
        each partition's in order, in chunks of at most one fetch, so that a large
        partition never has to be in memory all at once. One pass of one consumer
        reads all the partitions.
        """
        async with self._lock:
            await self._read(topic, sorted(set(partitions)), take)

    async def _read(self, topic: str, partitions: list[int], take: Callable[[int, Chunk], None]) -> None:
        if not partitions:
            return
        if self._consumer is None:
            consumer = make_reader(self.settings, max_wait_ms=self.MAX_WAIT_MS)
            await consumer.start()
            self._consumer = consumer
        consumer = self._consumer
        if consumer.partitions_for_topic(topic) is None:
            await topic_partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        # Empty (or fully compacted away) partitions have nothing to fetch.
        todo = [tp for tp in tps if begins[tp] < ends[tp]]
        if not todo:
            return
        consumer.assign(todo)
        for tp in todo:
            consumer.seek(tp, begins[tp])
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=10000)
            for tp, fetched in batch.items():
                end = ends[tp]
                take(tp.partition, [(r.key, r.value) for r in fetched if r.offset < end])
            todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]

    async def close(self) -> None:
        """Stop the underlying consumer."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


def _abandon_open(restores: dict[int, Restore]) -> None:
    """Abandon every restore not finished or abandoned yet."""
    for restore in restores.values():
        if not restore.closed:
            restore.abandon()


def _finish_all(restores: dict[int, Restore]) -> dict[int, PartitionState]:
    """Finish every restore, in partition order; should one fail, abandon the ones not closed."""
    states = {}
    try:
        for partition in sorted(restores):
            states[partition] = restores[partition].finish()
    except BaseException:
        _abandon_open(restores)
        raise
    return states


class RollupStage:
    """Stage 1 state handling for the enrich agent, and the merge agent's loop body."""

    def __init__(
        self,
        settings: Settings,
        config: RollupConfig,
        producer: Callable[[], Any],
        owned_partials: Callable[[], set[int]],
    ) -> None:
        self.settings = settings
        self._producer = producer
        self._owned_partials = owned_partials
        self.spill = Spill(spill_folder(settings.worker.data_dir), settings.rollups.state_in_memory)
        self.engine = RollupEngine(config, self.spill)
        self.merger = Merger(config.grace_seconds, config.retention_seconds, self.spill)
        # One reader per stage: the enrich and merge agents restore concurrently.
        self.reader = TopicReader(settings)
        self.merge_reader = TopicReader(settings)
        self.state_topic = settings.topic(STATE)
        self.partials_topic = settings.topic(PARTIALS)
        self.late_topic = settings.topic(LATE)
        self.facets_topic = settings.topic(FACETS)
        self.rollups_topic = settings.topic(ROLLUPS)
        self._generation: dict[int, int] = {}
        #: Wall-clock ms of the last batch seen per raw partition (``advance_idle`` reads it).
        self.active: dict[int, int] = {}
        self.idle_ms = config.idle_seconds * 1000
        #: Raw partitions whose state here was read from the changelog since the last rebalance.
        self.current: set[int] = set()
        #: Counts rebalances, so that work started before one writes nothing after it.
        self.epoch = 0
        #: Wall-clock ms of the last rebalance (0: none yet).
        self.rebalanced_at = 0
        self._merge_generation: dict[int, int] = {}
        self.partials_partitions = settings.kafka.partitions
        #: Records read and written, for metrics (read by pipeline.metrics at scrape time).
        self.counts = {"partials_in": 0, "partials": 0, "late": 0, "facets": 0, "rollups": 0}

    @property
    def producer(self) -> Any:
        """The app's producer (created by faust at start, hence looked up on use)."""
        return self._producer()

    # -- stage 1, inside the enrich agent ----------------------------------------------
    def needs_restore(self, partitions: Iterable[tuple[int, int]]) -> bool:
        """True when a (partition, generation) of the batch is not restored for that generation."""
        return any(self._generation.get(p) != g or not self.engine.loaded(p) for p, g in partitions)

    async def prepare(self, partitions: Iterable[tuple[int, int]]) -> None:
        """Restore every (partition, generation) of the batch not restored for that generation."""
        partitions = set(partitions)
        now = now_ms()
        for partition, _generation in partitions:
            self.active[partition] = now
        stale = {
            partition: generation
            for partition, generation in partitions
            if self._generation.get(partition) != generation or not self.engine.loaded(partition)
        }
        if not stale:
            return
        started = time.monotonic()
        # One pass for all of them: a worker given partitions gets them in one batch.
        states = _finish_all(await self._restore(stale))
        for partition, generation in sorted(stale.items()):
            state = states[partition]
            self._generation[partition] = generation
            self.current.add(partition)
            log.info(
                "rollup state of partition %d restored: %d partials, offset %d, in %.2f s",
                partition,
                len(state.partials),
                state.offset,
                time.monotonic() - started,
            )

    def apply(self, partition: int, offset: int, event: dict[str, Any], received_ms: int) -> list[Verdict]:
        """Aggregate one enriched action; the verdicts say for which windows it was late."""
        return self.engine.apply(partition, offset, event, received_ms)

    def late_value(self, event: dict[str, Any], verdicts: list[Verdict]) -> bytes:
        """The late-topic record of a late action, with its reasons (never dropped)."""
        reasons = [
            {"kind": v.kind, "rollup": v.rollup, "interval": v.interval, "window_start": v.window_start}
            for v in verdicts
        ]
        self.counts["late"] += 1
        return orjson.dumps({"reasons": reasons, "action": event})

    def flush_outputs(self, partitions: Iterable[int]) -> dict[int, tuple[Outputs, Outputs]]:
        """Per partition: its dirty partials (changelog and partials topic), then its meta record.

        The meta record says "everything up to this offset is above": written
        plainly (at least once), it must follow the acknowledgement of the first
        part; in a transaction, both commit together.
        """
        flushed = {}
        for partition in sorted(set(partitions)):
            if not self.engine.loaded(partition):
                # Released (see ``release``) or lost to another worker while actions of it were
                # held: their output is not committed, and the partition's owner replays them.
                log.warning("actions of partition %d held for a flush, but its state was released", partition)
                continue
            changes, meta = self.engine.flush(partition)
            self.counts["partials"] += len(changes)  # one partials-topic record each, tombstones included
            watermark = self.engine.partitions[partition].watermark
            records = Outputs()
            for partial, evicted in changes:
                key = partial.encoded_key
                routed = route(partial.key, self.partials_partitions)
                if evicted:
                    records.add(self.state_topic, partition, key, None)
                    records.add(self.partials_topic, routed, tombstone_key(key, partition), None)
                    continue
                value = partial.to_bytes()  # encoded once, for both topics
                records.add(self.state_topic, partition, key, value)
                records.add(self.partials_topic, routed, *partial_record(key, partition, value, watermark))
            metas = Outputs()
            if meta is not None:
                metas.add(self.state_topic, partition, *meta)
            flushed[partition] = (records, metas)
        return flushed

    async def flush(self, partitions: Iterable[int], writers: PartitionWriters) -> None:
        """Write the dirty partials of ``partitions``, then their meta records (not committed here)."""
        flushed = self.flush_outputs(partitions)
        for partition, (records, _metas) in flushed.items():
            await writers.send(partition, records)
        if not writers.exactly_once:
            for partition in flushed:
                await writers.commit(partition, None)  # at least once: wait for the acknowledgements
        for partition, (_records, metas) in flushed.items():
            await writers.send(partition, metas)
        self.spill.balance()

    async def advance_idle(
        self,
        owned: set[int],
        now: int,
        writers: PartitionWriters,
        caught_up: Callable[[int], bool] = lambda _p: True,
    ) -> list[int]:
        """Move the watermark of quiet raw partitions on the wall clock; the partitions moved.

        A raw partition that has had no actions for ``idle`` (rollup config) would
        hold every window open for good: the merge stage waits for all source
        partitions to pass a window. Its watermark moves to ``now - idle`` instead,
        in steps of at least a sixth of ``idle``, as a meta record on its changelog
        first and then as a watermark-only record on every partials partition.
        Actions that arrive there later are classified against it like any other:
        older than a window that became final means late. Only partitions this
        worker owns (``owned``, raw partition numbers), has flushed, and has read
        to the end of (``caught_up``: no batch for a while may also mean a backlog
        not fetched yet) move. A rebalance while it waits on Kafka stops it before
        its next write. ``writers`` must have a producer for every owned partition;
        what this writes is committed here.
        """
        if self.idle_ms <= 0:
            return []
        epoch = self.epoch
        # Owned partitions that had no batch since the last rebalance hold state that may be
        # stale (another worker may have had them meanwhile) or none: read it from the changelog,
        # unless actions of theirs wait for the next flush (that state must be flushed first).
        # Not before ``idle`` has passed since the rebalance: a partition with traffic is
        # restored by its first batch within seconds, and reading it here too would double
        # the restore work of a take-over.
        unread = {p for p in owned - self.current if not self.engine.unflushed(p)}
        if unread and now - self.rebalanced_at >= self.idle_ms:
            restores = await self._restore(unread)
            if self.epoch != epoch:
                _abandon_open(restores)  # not loaded: the partition's next batch restores it
                return []
            _finish_all(restores)
            for partition in sorted(unread):
                self._generation.pop(partition, None)  # the next batch restores it again, as usual
                self.active[partition] = now  # quiet from now on, as far as this worker knows
                self.current.add(partition)
            # A flush cut short by a crash left partials to send again (``Restore``).
            resent = [p for p in sorted(unread) if self.engine.unflushed(p)]
            await self.flush(resent, writers)
            for partition in resent:
                await writers.commit(partition, None)
            if self.epoch != epoch:
                return []
        target = now - self.idle_ms
        step = max(1000, self.idle_ms // 6)
        metas = {}
        for partition in sorted(owned & self.current):
            watermark = self.engine.partitions[partition].watermark
            if now - self.active.get(partition, now) < self.idle_ms or watermark is None:
                continue
            if not caught_up(partition):
                continue
            if target - watermark >= step and (meta := self.engine.advance_idle(partition, target)):
                metas[partition] = meta
        if not metas:
            return []
        for partition, (key, value) in metas.items():
            record = Outputs()
            record.add(self.state_topic, partition, key, value)
            await writers.send(partition, record)
            if not writers.exactly_once:
                await writers.commit(partition, None)  # the meta record first, as in ``flush``
        if self.epoch != epoch:
            return []
        for partition in metas:
            marks = Outputs()
            for routed in range(self.partials_partitions):
                marks.add(self.partials_topic, routed, *watermark_record(partition, target))
            self.counts["partials"] += self.partials_partitions
            await writers.send(partition, marks)
            await writers.commit(partition, None)
        log.info(
            "watermark of quiet partitions %s moved to %d (no actions for %d s)",
            sorted(metas),
            target,
            self.idle_ms // 1000,
        )
        return sorted(metas)

    async def _restore(self, partitions: Iterable[int]) -> dict[int, Restore]:
        """Read the changelog of ``partitions`` into restores, in one pass (to be finished or abandoned)."""
        restores = {partition: self.engine.restoring(partition) for partition in sorted(set(partitions))}
        try:
            await self.reader.read_each(
                self.state_topic, restores, lambda partition, chunk: restores[partition].add(chunk)
            )
        except BaseException:
            _abandon_open(restores)
            raise
        return restores

    def forget(self, partition: int) -> None:
        """Drop the state of a raw partition at once (lost to another worker: its changelog is the truth)."""
        self.engine.drop(partition)
        self._generation.pop(partition, None)
        self.active.pop(partition, None)
        self.current.discard(partition)

    def release(self, owned: set[int]) -> list[int]:
        """Forget the state of raw partitions not owned here; the partitions released.

        Called about once a second outside rebalances (``owned``: this worker's raw
        partitions). The changelog of a moved partition holds everything this
        worker had (faust waits for every held action to be flushed before it
        gives partitions up), and a partition assigned here again is restored from
        it by its first batch. Without this, a worker keeps the state of every
        partition it ever owned: after scaling out, as much as before. State still
        to flush is kept (that cannot follow a rebalance, which flushes first) and
        released by a later call once flushed. Spilled partials go too.
        """
        released = sorted(
            p for p in self.engine.partitions if p not in owned and not self.engine.unflushed(p)
        )
        for partition in released:
            self.forget(partition)
        if released:
            log.info("rollup state of partitions %s released: owned by another worker now", released)
        return released

    def rebalanced(self, now: int | None = None) -> None:
        """Partitions moved: no state here is known current until read again (see ``advance_idle``)."""
        self.current.clear()
        self.epoch += 1
        self.rebalanced_at = now_ms() if now is None else now

    # -- stage 2, the merge agent -------------------------------------------------------
    async def merge(self, events: list[Any]) -> None:
        """Offer a batch of partials-topic records to the merger, then write the upserts."""
        # Keys of partitions given to another worker must not be written again:
        # a window turning final here would otherwise publish this worker's
        # stale merge after the new owner's up-to-date one.
        owned = self._owned_partials()
        for partition in self.merger.route_partitions() - owned:
            self.merger.drop(partition)
            self._merge_generation.pop(partition, None)
        stale = {
            e.message.partition: e.message.generation_id
            for e in events
            if self._merge_generation.get(e.message.partition) != e.message.generation_id
        }
        if stale:
            # Rebuild newly owned partitions from the partials topic, all in one pass. The
            # batch's own records are offered again below: older partials change nothing.
            for partition in stale:
                self.merger.drop(partition)
                self._merge_generation.pop(partition, None)  # until read in full

            def offer(partition: int, chunk: Chunk) -> None:
                for _key, value in chunk:
                    self.merger.offer(value, partition)

            await self.merge_reader.read_each(self.partials_topic, stale, offer)
            self._merge_generation.update(stale)
        for event in events:
            self.merger.offer(event.message.value, event.message.partition)
        self.counts["partials_in"] += len(events)
        upserts = self.merger.flush(now_ms())
        topics = {"facets": self.facets_topic, "rollups": self.rollups_topic}
        sent = [
            await self.producer.send(topics[u.topic], u.key, orjson.dumps(u.value), None, None, None)
            for u in upserts
        ]
        await asyncio.gather(*sent)
        for u in upserts:
            self.counts[u.topic] += 1
        self.spill.balance()

    async def close(self) -> None:
        """Release the readers and the spill database."""
        await self.reader.close()
        await self.merge_reader.close()
        self.spill.close()
