"""The enrich agent's batch loop: process a batch, hold it, commit each partition's outputs at once.

Each batch of raw actions is enriched (:class:`~pipeline.process.Processor`),
fed to the rollup stage, and its outputs are sent in the open transaction of
its raw partition (:class:`~pipeline.outputs.PartitionWriters`). The events
are then held: every ``interval`` seconds (stretched while a backlog is read),
the loop flushes the rollup state of the held events' partitions into the same
transactions and commits each partition's transaction with its next offset.
Only then are the events acknowledged to faust.

Flushing per interval rather than per batch: each flush writes every changed
partial and a commit costs a few round trips per partition, so committing per
batch multiplied both (see docs/decisions/).

Exactly once, a flush due after a batch does not wait for its commits: they
run in the background while the next batches are processed. A producer has
one transaction at a time, so the outputs of those batches are kept back
(``deferred``) until the commits are over (:meth:`BatchLoop.settle`), then
sent in the partitions' next transactions: no output of a batch is ever in
the transaction of an earlier one, which would make it visible before its
offsets commit. A failed commit makes the next ``settle`` raise, dropping the
kept-back outputs unsent with their events unacknowledged (the worker stops
and both batches are replayed); a partition lost to another worker drops its
kept-back outputs and held events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.clock import now_ms
from pipeline.outputs import Fenced, Outputs, PartitionWriters
from pipeline.process import Processor
from pipeline.rollups.stage import RollupStage
from pipeline.worker.faust_private import ack_events
from pipeline.worker.tasks import PartitionTask, PartitionTasks

log = logging.getLogger(__name__)

#: Exactly once, let the batches after a flush be processed while its transactions commit
#: (a module constant rather than a setting: off means the loop waits for every commit).
OVERLAP_COMMITS = True


class BatchLoop:
    """Processes batches of raw events and commits their outputs partition by partition."""

    BACKLOG_STRETCH = 5
    MAX_HELD = 50_000

    def __init__(
        self,
        processor: Processor,
        stage: RollupStage | None,
        writers: PartitionWriters,
        tasks: PartitionTasks | None,
        topics: dict[str, str],
        interval: float,
        batch_size: int = 0,
        commit_consumer: Callable[[], Awaitable[Any]] | None = None,
        caught_up: Callable[[], bool] | None = None,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.processor = processor
        self.stage = stage
        self.writers = writers
        #: Per raw partition: the ids seen and the offset committed last (None: neither kept).
        self.tasks = tasks
        self.enriched_topic = topics["enriched"]
        self.bad_topic = topics["bad"]
        self.late_topic = topics["late"]
        #: Commits the consumer's acknowledged offsets: at least once only (exactly once
        #: commits them in each partition's transaction).
        self.commit_consumer = commit_consumer
        #: True when the consumer has read every raw partition it owns to its end.
        self.caught_up = caught_up
        self.observe = observe
        self.interval = interval
        self.batch_size = batch_size
        self.events: list[Any] = []
        self.stream: Any = None
        self.lock = asyncio.Lock()
        self.last = time.monotonic()
        self.behind = False
        #: The batch just held ended a run of full ones, and nothing more was waiting.
        self.drained = False
        self.held_at = self.last
        #: Above 0 while faust waits for every delivered event to be acknowledged: flush at once.
        self.draining = 0
        #: Exactly once: the commits of the last flush, while they run (see ``settle``).
        self.committing: asyncio.Task[tuple[list[int], BaseException | None]] | None = None
        #: Outputs of the batches processed meanwhile, per raw partition in order, not sent yet.
        self.deferred: list[tuple[int, Outputs]] = []
        self.overlap = OVERLAP_COMMITS and writers.exactly_once

    # -- one batch ---------------------------------------------------------------------
    async def handle(self, events: list[Any], stream: Any) -> None:
        """Process one batch from the raw topic and hold it for the next commit."""
        self.stream = stream
        async with self.lock:
            partitions = {(e.message.partition, e.message.generation_id) for e in events}
            committing = self.committing
            if committing is not None and (committing.done() or not self.ready(partitions)):
                await self.settle()  # what follows may start producers or read state
            if self.events and self.writers.stale(partitions):
                await self.flush_locked()  # held output goes with the producer it was written by
            # Fences the partitions' earlier owners before their state is read.
            await self.writers.ensure(partitions)
            if self.tasks is not None:
                await self.tasks.prepare(partitions)
            stage = self.stage
            if self.events and stage is not None and stage.needs_restore(partitions):
                await self.flush_locked()  # never restore over state not yet flushed
            await self.process(events)
            self.hold(events)
            if self.due():
                await self.flush_locked(wait=False)

    def ready(self, partitions: set[tuple[int, int]]) -> bool:
        """True when every (partition, generation) of a batch has its producer, task and state here."""
        writers = self.writers
        if writers.stale(partitions) or not {p for p, _ in partitions} <= writers.partitions:
            return False
        if self.tasks is not None and not self.tasks.ready(partitions):
            return False
        return self.stage is None or not self.stage.needs_restore(partitions)

    async def process(self, events: list[Any]) -> None:
        """Enrich the events and send their outputs in their partitions' open transactions."""
        started = time.perf_counter()
        received = now_ms()
        stage = self.stage
        if stage is not None:
            await stage.prepare({(e.message.partition, e.message.generation_id) for e in events})
        outputs: dict[int, Outputs] = {}
        process = self.processor.process
        enriched_topic, bad_topic, late_topic = self.enriched_topic, self.bad_topic, self.late_topic
        tasks = self.tasks
        # Per raw partition of the batch: its task, what it skips below, its dedupe check,
        # its outputs and its enriched records (added to the outputs in one go at the end).
        slots: dict[int, tuple[Any, int, Any, Outputs, list[tuple[Any, bytes]]]] = {}
        for event in events:
            message = event.message
            partition = message.partition
            offset = message.offset
            slot = slots.get(partition)
            if slot is None:
                task: PartitionTask | None = tasks[partition] if tasks is not None else None
                records = outputs[partition] = Outputs()
                slot = slots[partition] = (
                    task,
                    -1 if task is None else task.next_offset,
                    None if task is None else task.seen.seen,
                    records,
                    [],
                )
            owner, skip_below, seen, records, enriched = slot
            if offset < skip_below:  # -1 without a task
                assert owner is not None
                owner.skipped += 1
                continue  # the last commit covered it: its outputs and effects are on Kafka
            out = process(
                message.value,
                key=message.key,
                topic=message.topic,
                partition=partition,
                offset=offset,
                received_at=received,
                seen=seen,
            )
            if out.duplicate:
                if stage is not None and out.date is not None:
                    stage.engine.duplicate(partition, offset, out.date)
                continue
            if out.event is not None:
                # Same partition as the source: the enriched topic keeps the raw topic's
                # partitioning, null keys included.
                enriched.append((message.key, out.value))
                if stage is not None:
                    verdicts = stage.apply(partition, offset, out.event, received)
                    if verdicts:
                        records.add_keyed(late_topic, message.key, stage.late_value(out.event, verdicts))
            else:
                records.add_keyed(bad_topic, message.key, out.value)
        for partition, (_, _, _, records, enriched) in slots.items():
            if enriched:
                records.batches.extend(enriched_topic, partition, enriched)  # type: ignore[arg-type]
        if self.committing is not None:
            self.deferred.extend(outputs.items())  # sent in the next transactions (``settle``)
        else:
            for partition, records in outputs.items():
                await self.writers.send(partition, records)
        if self.observe is not None:
            self.observe(time.perf_counter() - started)

    # -- holding and committing ---------------------------------------------------------
    def hold(self, events: list[Any]) -> None:
        """Keep a processed batch's events until the commit that covers them; a full batch means behind."""
        self.events.extend(events)
        behind = 0 < self.batch_size <= len(events)
        if self.behind and not behind and self.caught_up is not None:
            self.drained = self.caught_up()
        self.behind = behind
        self.held_at = time.monotonic()

    def due(self) -> bool:
        """True when events wait and the commit period has passed, or nothing waits but commits ended.

        The latter lets the timer settle the commits of the last flush once traffic
        stops: a failed one must stop the worker then, not at the next batch. With
        events held, the period applies as ever (settling comes first in a flush).
        """
        if not self.events:
            return self.committing is not None and self.committing.done()
        if self.draining or self.drained:
            return True
        now = time.monotonic()
        period = self.interval
        # Behind only while full batches keep coming: a pause ends it (the timer then flushes).
        if self.behind and now - self.held_at < self.interval and len(self.events) < self.MAX_HELD:
            period *= self.BACKLOG_STRETCH
        return now - self.last >= period

    async def flush_locked(self, wait: bool = True) -> None:
        """Flush the held events' rollup state, commit each partition, then acknowledge (lock held).

        ``wait`` False (exactly once only) returns once the commits are under
        way; the next ``settle`` waits for them.
        """
        await self.settle()
        events, self.events = self.events, []
        self.drained = False
        next_offsets: dict[int, int] = {}
        for event in events:
            message = event.message
            if message.offset >= next_offsets.get(message.partition, -1):
                next_offsets[message.partition] = message.offset + 1
        if self.stage is not None:
            await self.stage.flush(next_offsets, self.writers)
        if self.tasks is not None:
            for partition, offset in next_offsets.items():
                await self.writers.send(partition, self.tasks.changes(partition, offset))
        self.committing = asyncio.ensure_future(self._commit(events, next_offsets))
        if wait or not self.overlap or self.draining:
            await self.settle()

    async def _commit(
        self, events: list[Any], next_offsets: dict[int, int]
    ) -> tuple[list[int], BaseException | None]:
        """Commit each partition's transaction; acknowledge the events if none failed.

        Returns the partitions lost to another worker and the first other
        failure; ``settle`` acts on both (on the loop's side of the lock).
        """
        results = await asyncio.gather(
            *(self.writers.commit(p, offset) for p, offset in sorted(next_offsets.items())),
            return_exceptions=True,
        )
        failure = None
        lost = []
        for partition, result in zip(sorted(next_offsets), results, strict=True):
            if isinstance(result, Fenced):
                lost.append(partition)
            elif isinstance(result, BaseException):
                failure = failure or result
        if failure is not None:
            # Nothing of the failed transactions is visible and their events stay unacknowledged:
            # the worker stops (see the agent's supervisor) and the partitions are replayed.
            return lost, failure
        # Acknowledged only now: faust's own offset bookkeeping follows what Kafka committed.
        # Events of a partition lost to another worker are acknowledged too (faust would wait
        # for them for ever); this worker's consumer can no longer commit that partition.
        await ack_events(self.stream, events)
        if events and self.commit_consumer is not None and not await self.commit_consumer():
            # A commit already in flight makes faust's return False without these offsets.
            await self.commit_consumer()
        self.last = time.monotonic()
        return lost, None

    async def settle(self) -> None:
        """Wait for the last flush's commits, then send the outputs kept back meanwhile (lock held)."""
        committing, self.committing = self.committing, None
        if committing is None:
            return
        deferred, self.deferred = self.deferred, []
        lost, failure = await committing
        if lost:
            self.lost(lost)
            gone = set(lost)
            # Held since the commit started: their state went with ``lost``, their outputs are dropped.
            dropped = [e for e in self.events if e.message.partition in gone]
            if dropped:
                self.events = [e for e in self.events if e.message.partition not in gone]
                await ack_events(self.stream, dropped)
            deferred = [(p, outputs) for p, outputs in deferred if p not in gone]
        if failure is not None:
            raise failure  # the kept-back outputs go unsent; their events stay unacknowledged
        for partition, outputs in deferred:
            await self.writers.send(partition, outputs)

    def lost(self, partitions: list[int]) -> None:
        """Another worker took ``partitions`` over: forget what this one had of them."""
        log.warning(
            "raw partitions %s were taken over by another worker while this one held uncommitted "
            "output for them (paused or cut off past the session timeout): that output is dropped, "
            "the new owner processes those actions, and this worker rejoins the group",
            partitions,
        )
        for partition in partitions:
            if self.stage is not None:
                self.stage.forget(partition)
            if self.tasks is not None:
                self.tasks.forget(partition)

    async def flush(self) -> None:
        """Flush and commit now, and wait for the commits (takes the lock)."""
        async with self.lock:
            if self.events:
                await self.flush_locked()
            else:
                await self.settle()

    async def close(self) -> None:
        """Wait for commits still running (stopping): what they leave open is aborted afterwards."""
        committing, self.committing = self.committing, None
        self.deferred = []
        if committing is not None:
            _lost, failure = await committing
            if failure is not None:
                log.warning("the last commit failed while the worker stopped: %s", failure)
