"""Every monitor's state and the latest events, whichever ``serve`` instance evaluates them.

:class:`StateBoard` assigns itself every partition of ``rum.monitors.state``
(from the beginning: the compacted topic is the current state of every
monitor and group) and of ``rum.monitors.events`` (only the last
:data:`RECENT` records of each partition), outside any consumer group, with
``read_committed`` (evaluation writes each cycle in one transaction). It is
what ``GET /api/v1/monitors`` answers from; it is *caught up* once it has read
to the end offsets the partitions had when it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.consume import make_reader, topic_partitions
from pipeline.settings import Settings
from pipeline.topics import MONITOR_EVENTS, MONITOR_STATE

log = logging.getLogger(__name__)

#: Events kept per events partition (the endpoint lists the newest 50 of all partitions).
RECENT = 50


class StateBoard:
    """The latest state record per key and the recent events, kept live from the topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_topic = settings.topic(MONITOR_STATE)
        self.events_topic = settings.topic(MONITOR_EVENTS)
        #: State key -> its latest ``monitor-state.v1`` record (tombstones remove keys).
        self.states: dict[bytes, dict[str, Any]] = {}
        self._events: dict[int, deque[dict[str, Any]]] = {}
        #: Latest evaluation time any record read says (epoch ms), None before any.
        self.evaluated_at: int | None = None
        self.caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._targets: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, position every partition, and read in the background."""
        consumer = make_reader(self.settings, isolation_level="read_committed", max_wait_ms=200)
        await consumer.start()
        self._consumer = consumer
        try:
            states = await topic_partitions(consumer, self.state_topic)
            events = await topic_partitions(consumer, self.events_topic)
            consumer.assign([*states, *events])
            await consumer.seek_to_beginning(*states)
            firsts = await consumer.beginning_offsets(events)
            ends = await consumer.end_offsets([*states, *events])
            for tp in events:
                consumer.seek(tp, max(firsts[tp], ends[tp] - RECENT))
            self._targets = {tp: end for tp, end in ends.items() if end > 0}
        except BaseException:
            await consumer.stop()
            raise
        await self._check_caught_up()
        self._task = asyncio.create_task(self._run(), name="monitor state board")

    async def stop(self) -> None:
        """Stop reading and disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def apply(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of the state or events topic."""
        if topic == self.state_topic:
            if key is None:
                return
            if value is None:
                self.states.pop(key, None)
                return
            record = orjson.loads(value)
            self.states[key] = record
            self._saw(record["evaluated_at"])
        elif value is not None:
            event = orjson.loads(value)
            queue = self._events.get(partition)
            if queue is None:
                queue = self._events[partition] = deque(maxlen=RECENT)
            queue.append(event)
            self._saw(event["at"])

    def _saw(self, at: int) -> None:
        if self.evaluated_at is None or at > self.evaluated_at:
            self.evaluated_at = at

    def events(self, limit: int = RECENT) -> list[dict[str, Any]]:
        """The newest ``limit`` events of every partition, newest first."""
        merged = [event for queue in self._events.values() for event in queue]
        merged.sort(key=lambda e: (e["at"], e["monitor"]), reverse=True)
        return merged[:limit]

    def monitor_states(self, monitor: str) -> list[dict[str, Any]]:
        """The state records of one monitor."""
        return [record for record in self.states.values() if record["monitor"] == monitor]

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    try:
                        self.apply(tp.topic, tp.partition, record.key, record.value)
                    except (ValueError, KeyError, TypeError) as exc:  # a foreign record: skip, say so
                        log.warning("%s[%d]@%d: unreadable record skipped: %s", tp.topic, tp.partition,
                                    record.offset, exc)  # fmt: skip
            if not self.caught_up.is_set():
                await self._check_caught_up()

    async def _check_caught_up(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp, end in self._targets.items():
            if await consumer.position(tp) < end:
                return
        self.caught_up.set()
