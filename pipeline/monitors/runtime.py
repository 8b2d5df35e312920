"""Monitor evaluation inside ``rum-pipeline serve``: ownership, restore, cycles, records, webhooks.

- **Ownership.** Every ``serve`` instance joins one consumer group
  (RUM_MONITOR_GROUP) on ``rum.monitors.state``. The partitions Kafka assigns
  an instance are the monitors it evaluates: those whose name falls in them
  (:func:`~pipeline.monitors.records.monitor_partition`). One partition has one
  owner at a time, so each monitor is evaluated by exactly one instance.
- **Restore.** When partitions are assigned, their state records are read
  from the beginning to the end (``read_committed``) into one
  :class:`~pipeline.monitors.evaluate.Evaluator` per partition, before the
  instance evaluates them: a restart or a move to another instance neither
  repeats nor loses an event.
- **Cycles.** Every RUM_MONITOR_INTERVAL seconds, once the view has caught up,
  the owned monitors are evaluated on the live view, and the cycle's events,
  state upserts and tombstones are written in **one Kafka transaction**: a
  crash leaves either all of a cycle or none of it. A revocation waits for the
  cycle in progress, so the next owner restores from what it wrote.
- **Webhooks** are submitted after the transaction commits, to a
  :class:`~pipeline.monitors.webhook.WebhookNotifier` whose background tasks
  send them: a receiver that is down or hangs never delays a cycle.

An instance that is cut off from the group for longer than the session timeout
while still running may write once more after its partitions moved (there is
no lease fencing); stopping an instance (SIGTERM) hands its monitors over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from pipeline.clock import now_ms
from pipeline.consume import make_reader, topic_partitions
from pipeline.errors import PipelineError
from pipeline.kafka_auth import client_kwargs
from pipeline.monitors.board import StateBoard
from pipeline.monitors.evaluate import CycleResult, Evaluator, Source
from pipeline.monitors.model import Monitor
from pipeline.monitors.records import event_key, monitor_partition, state_key
from pipeline.monitors.webhook import WebhookNotifier
from pipeline.schemas import MONITOR_EVENT, MONITOR_STATE, validate_record
from pipeline.settings import Settings
from pipeline.topics import MONITOR_EVENTS
from pipeline.topics import MONITOR_STATE as STATE_TOPIC

log = logging.getLogger("rum.monitors")


class CycleSource(Source, Protocol):
    """A Source told when a cycle starts (so that it can share work between the monitors of one cycle)."""

    def new_cycle(self) -> None:
        """A new cycle starts."""


@dataclass
class RuntimeStats:
    """What evaluation has done since start."""

    cycles: int = 0
    #: ``now`` of the latest cycles (epoch ms), oldest first.
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=100))
    #: Wall seconds the last cycle took (evaluation and the transaction).
    last_seconds: float = 0.0
    events: int = 0
    states: int = 0
    write_failures: int = 0
    #: Monitor -> cycles in which its values could not be read.
    source_failures: dict[str, int] = field(default_factory=dict)


def group_id(settings: Settings) -> str:
    """The consumer group sharing the monitors (RUM_MONITOR_GROUP, default ``<app id>-monitors``)."""
    return settings.monitors.group or f"{settings.kafka.app_id}-monitors"


async def read_states(
    settings: Settings, topic: str, partitions: Iterable[int], timeout: float = 60.0
) -> dict[int, list[dict[str, Any]]]:
    """The live state records of ``partitions`` (latest per key, tombstones applied), read to the end."""
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    latest: dict[int, dict[bytes, dict[str, Any]]] = {tp.partition: {} for tp in tps}
    if not tps:
        return {}
    consumer = make_reader(settings, isolation_level="read_committed", max_wait_ms=100)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        # A transaction marker takes an offset too: reading is done once the position reaches the end.
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: state not read to the end within {timeout:g} s")
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in batch.items():
                kept = latest[tp.partition]
                for record in records:
                    if record.key is None:
                        continue
                    if record.value is None:
                        kept.pop(record.key, None)
                    else:
                        kept[record.key] = orjson.loads(record.value)
    finally:
        await consumer.stop()
    return {p: list(kept.values()) for p, kept in latest.items()}


class _Ownership(ConsumerRebalanceListener):
    def __init__(self, runtime: MonitorRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.runtime.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.runtime.take({tp.partition for tp in assigned})


class MonitorRuntime:
    """Evaluates the monitors this instance owns, every ``interval_s``; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        monitors: Iterable[Monitor],
        source: CycleSource,
        ready: Callable[[], bool] = lambda: True,
        *,
        interval_s: float | None = None,
        notifier: WebhookNotifier | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.monitors = {m.name: m for m in monitors}
        self.source = source
        self.ready = ready
        self.interval_s = settings.monitors.interval if interval_s is None else interval_s
        self.notifier = notifier or WebhookNotifier()
        self.clock = clock
        self.stats = RuntimeStats()
        #: Every monitor's state and the recent events, whoever evaluates them (for the API).
        self.board = StateBoard(settings)
        self.state_topic = settings.topic(STATE_TOPIC)
        self.events_topic = settings.topic(MONITOR_EVENTS)
        #: Owned state partition -> the evaluator of its monitors.
        self.owned: dict[int, Evaluator] = {}
        self._partitions = {self.state_topic: 0, self.events_topic: 0}
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._restore_again = False
        #: Assigned partitions whose restore failed: restored again before the next cycle.
        self._pending: set[int] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the board, connect the producer, join the group and start the evaluation loop."""
        try:
            await self.board.start()
        except LookupError as exc:  # the monitor topics are newer than the deployment's topics
            raise PipelineError(f"{exc}: run `rum-pipeline topics create`") from None
        kwargs = client_kwargs(self.settings)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            # One id per process: its transactions make a cycle all or nothing. Ownership, not
            # the id, keeps two instances from writing the same monitor.
            transactional_id=f"{group_id(self.settings)}-{uuid.uuid4().hex[:12]}",
            transaction_timeout_ms=30_000,
            acks="all",
            linger_ms=5,
            **kwargs,
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=group_id(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="latest",  # membership only: the records are read by the restore
            isolation_level="read_committed",
            session_timeout_ms=int(self.settings.kafka.session_timeout * 1000),
            heartbeat_interval_ms=min(3000, int(self.settings.kafka.session_timeout * 1000) // 3),
            **kwargs,
        )
        await self._consumer.start()
        for topic in self._partitions:
            self._partitions[topic] = len(await topic_partitions(self._consumer, topic))
        self._consumer.subscribe([self.state_topic], listener=_Ownership(self))
        self._tasks = [
            asyncio.create_task(self._membership(), name="monitor group membership"),
            asyncio.create_task(self._loop(), name="monitor evaluation"),
        ]

    async def stop(self) -> None:
        """Finish the cycle in progress, leave the group (the others take over), disconnect."""
        self._stopping.set()
        membership, loop = self._tasks or (None, None)
        if loop is not None:
            await asyncio.gather(loop, return_exceptions=True)
        if membership is not None:
            membership.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await membership
        if self._consumer is not None:
            await self._consumer.stop()  # revokes: nothing is being written any more
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self.notifier.close()
        await self.board.stop()

    async def _membership(self) -> None:
        """Keep polling: the group's rebalances run from the consumer's polls."""
        assert self._consumer is not None
        while True:
            try:
                await self._consumer.getmany(timeout_ms=1000)
            except Exception as exc:  # the broker away for a while: keep trying, as the view reader does
                log.warning("monitors: group membership: %s", exc)
                await asyncio.sleep(1.0)

    # -- ownership -------------------------------------------------------------------------

    def partition_of(self, monitor: str) -> int:
        """The state partition of ``monitor``."""
        return monitor_partition(monitor, self._partitions[self.state_topic])

    def owned_monitors(self) -> list[str]:
        """Names of the monitors this instance evaluates now."""
        return sorted(name for evaluator in self.owned.values() for name in evaluator.monitors)

    async def release(self, partitions: set[int]) -> None:
        """Stop evaluating ``partitions`` (after the cycle in progress and its transaction)."""
        async with self._lock:
            for partition in partitions:
                self.owned.pop(partition, None)
            self._pending -= partitions

    async def take(self, partitions: set[int]) -> None:
        """Restore ``partitions`` from the state topic, then evaluate their monitors."""
        fresh = partitions - self.owned.keys()
        try:
            restored = await read_states(self.settings, self.state_topic, fresh)
        except Exception:  # the partitions stay ours: the next cycle tries again first
            log.exception("monitors: restoring state partitions %s failed", sorted(fresh))
            self._pending |= fresh
            return
        async with self._lock:
            for partition, records in restored.items():
                self.owned[partition] = self._evaluator(partition, records)
        log.info("monitors: this instance evaluates %s (state partitions %s)",
                 ", ".join(self.owned_monitors()) or "none", sorted(self.owned))  # fmt: skip

    def _evaluator(self, partition: int, records: list[dict[str, Any]]) -> Evaluator:
        mine = [m for name, m in self.monitors.items() if self.partition_of(name) == partition]
        return Evaluator(mine, states=records)

    # -- cycles ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            if (self.owned or self._pending) and self.ready():
                try:
                    await self.run_cycle()
                except Exception:  # the next cycle tries again; the error is in the log
                    log.exception("monitors: evaluation cycle failed")
            wait = max(0.0, self.interval_s - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)

    async def run_cycle(self) -> CycleResult:
        """One cycle over the owned monitors: evaluate, write in one transaction, then notify."""
        started = time.monotonic()
        async with self._lock:
            if self._restore_again:  # the last write failed: what the topic holds is the truth
                self._pending |= self.owned.keys()
                self.owned = {}
                self._restore_again = False
            if self._pending:
                restored = await read_states(self.settings, self.state_topic, self._pending)
                for partition, records in restored.items():
                    self.owned[partition] = self._evaluator(partition, records)
                self._pending = set()
            now = self.clock()
            self.source.new_cycle()
            total = CycleResult()
            for evaluator in self.owned.values():
                result = evaluator.evaluate(now, self.source)
                total.events += result.events
                total.states += result.states
                total.removed += result.removed
                total.failed.update(result.failed)
            try:
                await self._write(total)
            except Exception:
                self._restore_again = True
                self.stats.write_failures += 1
                raise
        self.stats.cycles += 1
        self.stats.recent.append(now)
        self.stats.events += len(total.events)
        self.stats.states += len(total.states)
        for name in total.failed:
            self.stats.source_failures[name] = self.stats.source_failures.get(name, 0) + 1
        self.stats.last_seconds = time.monotonic() - started
        self.notifier.submit_events(self.monitors, total.events)
        return total

    async def _write(self, result: CycleResult) -> None:
        """The cycle's records in one transaction (nothing when the cycle changed nothing)."""
        if not (result.events or result.states or result.removed):
            return
        producer = self._producer
        assert producer is not None
        events_n, states_n = self._partitions[self.events_topic], self._partitions[self.state_topic]
        async with producer.transaction():
            for event in result.events:
                if _invalid(MONITOR_EVENT, event):
                    continue
                name = event["monitor"]
                await producer.send(
                    self.events_topic,
                    orjson.dumps(event),
                    key=event_key(name),
                    partition=monitor_partition(name, events_n),
                )
            for state in result.states:
                if _invalid(MONITOR_STATE, state):
                    continue
                name = state["monitor"]
                await producer.send(
                    self.state_topic,
                    orjson.dumps(state),
                    key=orjson.dumps([name, state["group"]]),  # the group object is in group_by order
                    partition=monitor_partition(name, states_n),
                )
            for name, group in result.removed:
                await producer.send(
                    self.state_topic,
                    None,
                    key=state_key(name, group),
                    partition=monitor_partition(name, states_n),
                )

    def live_states(self) -> dict[str, list[dict[str, Any]]]:
        """The state records of the monitors this instance owns, as of their last cycle."""
        out: dict[str, list[dict[str, Any]]] = {}
        for evaluator in self.owned.values():
            for record in evaluator.snapshot():
                out.setdefault(record["monitor"], []).append(record)
        return out


def _invalid(schema: str, record: dict[str, Any]) -> bool:
    """True (and logged) when ``record`` does not validate: such a record is never written."""
    errors = validate_record(schema, record)
    if errors:
        log.error("monitors: a %s record does not validate, not written: %s", schema, "; ".join(errors[:3]))
    return bool(errors)
