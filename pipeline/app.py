"""The faust application: `create_app(settings)` and the module-level `app`.

`app` is created on first access (PEP 562), so importing this module reads no
environment variables; the faust CLI (`faust -A pipeline.app:app worker`) and
`rum-pipeline worker` both end up here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message
from mode import ServiceT
from mode.supervisors import CrashingSupervisor

from pipeline.kafka_auth import broker_credentials
from pipeline.metrics import FaustProbe, WorkerMetrics, committed_position
from pipeline.partitioning import KeyPartitioner
from pipeline.process import Processor, now_ms
from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.rollups.stage import RollupStage
from pipeline.settings import Settings, load_settings
from pipeline.topics import BAD, ENRICHED, PARTIALS, RAW

log = logging.getLogger(__name__)


class BatchDeliveryConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer, handing each fetched batch to the streams in one guarded step.

    faust's fetcher loop (``Consumer._drain_messages``) wraps every single
    message in ``wait_first(callback(message), suspend_flow.wait())`` so that a
    rebalance or a stop can interrupt a delivery blocked on a full stream
    buffer. That costs four task creations and an ``asyncio.wait`` per message:
    30-40 µs each (on uvloop too), a third of the worker's CPU time per event
    (worker CPU 105-119 µs/event before, 65-75 µs/event after, with the
    processing itself at 20-35 µs/event).

    This loop keeps the same guard, once per fetched batch: the batch is
    delivered message by message exactly as before (same read-offset, gap and
    commit bookkeeping, same conductor callback) inside one ``wait_first``, so a
    rebalance, stop or crash still cancels a delivery that is blocked. Messages
    left undelivered are simply not marked read; faust seeks back to the
    committed offsets after a rebalance, as it does for the per-message guard.
    """

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set  # type: ignore[attr-defined]
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100  # as faust does: let the streams run during long batches

        async def deliver(batch: list[tuple[TP, Message]]) -> None:
            since_yield = 0
            for tp, message in batch:
                since_yield += 1
                if since_yield > yield_every:
                    await asyncio.sleep(0)
                    since_yield = 0
                offset = message.offset
                read_offset = get_read_offset(tp)
                if read_offset is not None and offset < read_offset:
                    continue  # already delivered (faust drops these too)
                if read_offset and offset - read_offset > 1 and acks_enabled_for(message.topic):
                    await self._add_gap(tp, read_offset + 1, offset)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                await callback(message)
                set_read_offset(tp, offset)

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                await self.sleep(0)
                if not self.should_stop:
                    batch = [item async for item in getmany(timeout=1.0)]
                    if batch:
                        await self.wait_first(deliver(batch), self.suspend_flow.wait())
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def wait_empty(self) -> None:
        """Flush the rollup state of held events, then wait for every event to be acknowledged.

        faust waits here before it gives partitions up (a rebalance) and before
        it stops. Events held for the next rollup flush are acknowledged by that
        flush only; on a stop the flush timer no longer runs, so faust would wait
        for them for ever. Flushing first also commits their offsets before the
        partitions go, so that their next owner reads nothing twice.
        """
        flusher = self.transport.flusher  # type: ignore[attr-defined]
        if flusher is None:
            await super().wait_empty()
            return
        # Events already delivered to the agent's stream are processed meanwhile: each of
        # their batches is flushed as soon as it is held.
        flusher.draining += 1  # a rebalance's wait and a stop's may overlap
        try:
            await flusher.flush()
            await super().wait_empty()
        finally:
            flusher.draining -= 1


class BatchDeliveryTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport with :class:`BatchDeliveryConsumer` as its consumer."""

    Consumer = BatchDeliveryConsumer
    #: The rollup flusher whose held events ``BatchDeliveryConsumer.wait_empty`` flushes first.
    flusher: RollupFlusher | None = None


#: Most partials the merge agent takes at once. A rollup flush sends every changed partial of
#: every raw partition in one burst, and each batch merges and upserts each key it touches:
#: taken 500 at a time, a key's partials from the raw partitions fell into several batches
#: and it was upserted about once per partial instead of once per burst.
MERGE_BATCH = 10_000


class RollupFlusher:
    """Holds acknowledgements until the rollup state of their events is on Kafka.

    Rollup state is flushed every ``interval`` seconds rather than after every
    batch: each flush writes every changed partial, so flushing per batch
    multiplied the writes (measured: 4.2 partials written per action with
    batches of 500, 1.3 with 5,000). Events stay unacknowledged, hence their
    offsets uncommitted, until the flush that covers them has landed.

    While batches come back full (records are waiting: a backlog, or traffic
    above what one batch per ``batch_within`` holds), the period stretches to
    ``BACKLOG_STRETCH`` intervals, or until ``MAX_HELD`` events wait: a flush
    costs about the same however many actions it covers, and freshness is
    bounded by the waiting records anyway. Once batches are no longer full,
    the period is ``interval`` again; and when the first batch that is not
    full finds the consumer at the end of its partitions (``caught_up``), the
    backlog is over and its last actions are flushed at once rather than at
    the next timer tick.
    """

    BACKLOG_STRETCH = 5
    MAX_HELD = 50_000

    def __init__(
        self,
        stage: RollupStage,
        interval: float,
        batch_size: int = 0,
        commit: Callable[[], Awaitable[Any]] | None = None,
        caught_up: Callable[[], bool] | None = None,
    ) -> None:
        self.stage = stage
        #: True when the consumer has read every partition of the raw topic it owns to its end.
        self.caught_up = caught_up
        #: Commits the acknowledged offsets (the consumer's ``commit``), right after a flush.
        self.commit = commit
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

    def hold(self, events: list[Any]) -> None:
        """Keep a processed batch's events until the flush that covers them; a full batch means behind."""
        self.events.extend(events)
        behind = 0 < self.batch_size <= len(events)
        if self.behind and not behind and self.caught_up is not None:
            self.drained = self.caught_up()
        self.behind = behind
        self.held_at = time.monotonic()

    def due(self) -> bool:
        """True when events wait and the flush period has passed."""
        if not self.events:
            return False
        if self.draining or self.drained:
            return True
        now = time.monotonic()
        period = self.interval
        # Behind only while full batches keep coming: a pause ends it (the timer then flushes).
        if self.behind and now - self.held_at < self.interval and len(self.events) < self.MAX_HELD:
            period *= self.BACKLOG_STRETCH
        return now - self.last >= period

    async def flush_locked(self) -> None:
        """Flush the state of the waiting events' partitions, then acknowledge them (lock held)."""
        events, self.events = self.events, []
        self.drained = False
        await self.stage.flush({e.message.partition for e in events})
        for event in events:
            await self.stream.ack(event)
        # Committed at once rather than at faust's next commit tick: a worker killed in between
        # would leave its successor to enrich these actions a second time. A commit already
        # in flight makes faust's return False without these offsets: then once more.
        if events and self.commit is not None and not await self.commit():
            await self.commit()
        self.last = time.monotonic()

    async def flush(self) -> None:
        """Flush now (takes the lock)."""
        async with self.lock:
            await self.flush_locked()


def create_app(settings: Settings, metrics: WorkerMetrics | None = None) -> faust.App:
    """A faust app with the enrichment agent, configured from ``settings``.

    ``metrics`` (made here when not given) reads the app's counters; its HTTP
    server starts with the app unless the caller started it before.
    """
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        broker_credentials=broker_credentials(settings),
        datadir=str(settings.data_dir),
        store="rocksdb://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Raw actions up to the topic's 8 MiB limit must be readable and their
        # bad rows writable; the size limit itself is enforced by the validator.
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
        producer_acks=-1,
        # Kafka's default placement of keyed records, with recent keys' hashes kept (upserts).
        producer_partitioner=KeyPartitioner(),
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_host="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.session_timeout / 10,
    )
    # Before any topic is declared: the conductor and consumer come from here.
    app.transport = BatchDeliveryTransport(app.conf.broker_consumer, app)
    raw = app.topic(settings.topic(RAW), key_serializer="raw", value_serializer="raw")
    enriched_topic = settings.topic(ENRICHED)
    bad_topic = settings.topic(BAD)
    processor = Processor(settings)

    stage = _rollup_stage(app, settings)
    metrics = metrics or WorkerMetrics(settings)
    metrics.bind(processor, stage, FaustProbe(app, settings.topic(RAW), stage))
    batch_seconds = metrics.batch_seconds

    @app.task
    async def serve_metrics() -> None:
        """Give the metrics server this loop (for lag and readiness); start it if nobody did."""
        metrics.attach_loop(asyncio.get_running_loop())
        metrics.serve()

    # An agent that fails must take the worker down: faust's default supervisor
    # would restart it past the failed batch, whose events were never
    # acknowledged and would then not be read again until the next restart.
    # Crashing hands the partitions to another worker, which replays them.
    raw_name = settings.topic(RAW)

    def raw_caught_up() -> bool:
        consumer = app.consumer
        return all(read_to_end(consumer, tp) for tp in consumer.assignment() if tp.topic == raw_name)

    flusher = (
        RollupFlusher(
            stage, settings.flush_interval, settings.batch_size, lambda: app.consumer.commit(), raw_caught_up
        )
        if stage is not None
        else None
    )
    app.transport.flusher = flusher

    @app.agent(raw, name="enrich", supervisor_strategy=CrashingSupervisor)
    async def enrich(stream: Any) -> None:  # a faust.Stream; StreamT lacks noack_take
        """raw -> enriched | bad row (and rollup partials), one output per input, in batches."""
        producer = app.producer
        async for events in stream.noack_take(settings.batch_size, within=settings.batch_within):
            if flusher is None:
                await _enrich_batch(events, producer)
                # Acknowledged (offsets committable) only once Kafka has every output.
                for event in events:
                    await stream.ack(event)
                continue
            flusher.stream = stream
            async with flusher.lock:
                partitions = {(e.message.partition, e.message.generation_id) for e in events}
                if flusher.events and stage is not None and stage.needs_restore(partitions):
                    await flusher.flush_locked()  # never restore over state not yet flushed
                await _enrich_batch(events, producer)
                # These events are acknowledged at the next rollup flush, once
                # their partials are on Kafka: a crash before it replays them,
                # and the offset stamps make the replay count nothing twice.
                flusher.hold(events)
                if flusher.due():
                    await flusher.flush_locked()

    async def _enrich_batch(events: list[Any], producer: Any) -> None:
        started = time.perf_counter()
        received = now_ms()
        if stage is not None:
            await stage.prepare({(e.message.partition, e.message.generation_id) for e in events})
        pending = []
        for event in events:
            message = event.message
            out = processor.process(
                message.value,
                key=message.key,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                received_at=received,
            )
            if out.event is not None:
                # Same partition as the source: the enriched topic keeps the
                # raw topic's partitioning, null keys included.
                sent = await producer.send(
                    enriched_topic, message.key, out.value, message.partition, None, None
                )
                if stage is not None:
                    verdicts = stage.apply(message.partition, message.offset, out.event, received)
                    if verdicts:
                        pending.append(await stage.late(message.key, out.event, verdicts))
            else:
                sent = await producer.send(bad_topic, message.key, out.value, None, None, None)
            pending.append(sent)
        await asyncio.gather(*pending)
        batch_seconds.observe(time.perf_counter() - started)

    if flusher is not None:

        @app.timer(interval=max(0.05, settings.flush_interval / 2))
        async def flush_rollups() -> None:
            """Flush rollup state (and acknowledge its events) when traffic pauses."""
            if flusher.due():
                try:
                    await flusher.flush()
                except Exception as exc:
                    # Like the agents: a failed flush must stop the worker (its
                    # events stay unacknowledged and are replayed elsewhere),
                    # not leave a timer that keeps failing.
                    await app.crash(exc)

        async def partitions_moved(*_args: Any, **_kwargs: Any) -> None:
            if stage is not None:
                stage.rebalanced()

        app.on_partitions_revoked.connect(partitions_moved)
        app.on_partitions_assigned.connect(partitions_moved)

        @app.timer(interval=max(1.0, settings.flush_interval))
        async def advance_quiet_partitions() -> None:
            """Forget the state of partitions gone elsewhere; let quiet ones stop holding windows open.

            Rollup config ``idle`` says when a raw partition without traffic counts as quiet.
            Here rather than in a rebalance callback: the lock may be held by a batch that is
            restoring state, and a callback waiting for it would hold up the group's rejoin.
            """
            if stage is None:
                return
            try:
                async with flusher.lock:
                    if app.rebalancing:
                        return  # ownership is changing: only an owner may write a partition's changelog
                    consumer = app.consumer
                    owned = {tp.partition for tp in consumer.assignment() if tp.topic == raw_name}
                    stage.release(owned)

                    def caught_up(partition: int) -> bool:
                        return read_to_end(consumer, TP(raw_name, partition))

                    await stage.advance_idle(owned, now_ms(), caught_up)
            except Exception as exc:
                await app.crash(exc)

    if stage is not None:
        partials = app.topic(settings.topic(PARTIALS), key_serializer="raw", value_serializer="raw")

        @app.agent(partials, name="merge", supervisor_strategy=CrashingSupervisor)
        async def merge(stream: Any) -> None:
            """Partials -> facet-index and rollup upserts."""
            batch = max(settings.batch_size, MERGE_BATCH)
            async for events in stream.take_events(batch, within=settings.batch_within):
                await stage.merge(events)

    return app


def read_to_end(consumer: Any, tp: TP) -> bool:
    """True when the consumer has read ``tp`` up to its high watermark (as of its last fetch)."""
    high = consumer.highwater(tp)
    if high is None:
        return False
    read = consumer._read_offset.get(tp)
    position = read + 1 if read is not None else committed_position(consumer, tp)
    return high == 0 or (position is not None and position >= high)


def _rollup_stage(app: faust.App, settings: Settings) -> RollupStage | None:
    """The rollup stage when enabled, with its config validated now (start-up)."""
    if not settings.rollups:
        return None
    path = settings.rollups_config or default_config_path()
    partials = settings.topic(PARTIALS)

    def owned_partials() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == partials}

    return RollupStage(settings, load_rollup_config(path), lambda: app.producer, owned_partials)


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    if name == "app":
        global _app
        if _app is None:
            _app = create_app(load_settings())
        return _app
    raise AttributeError(name)
