"""Every use of faust-streaming's private API, in one module (faust-streaming is pinned for it).

faust 0.15.3 is pinned in pyproject.toml; ``tests/worker/test_faust_private.py``
fails when an upgrade changes any private name or function used here:

- ``Consumer._drain_messages`` (overridden: one guarded delivery per fetched batch);
- ``Consumer._read_offset``, ``_committed_offset``, ``_commit_every``, ``_n_acked``, ``_add_gap``
  (read and kept as faust keeps them);
- ``AIOKafkaConsumerThread._create_worker_consumer`` and ``Consumer.in_transaction``
  (a worker consumer reading ``read_committed`` without faust's own transactions);
- ``Consumer._new_consumer_thread`` (to use that consumer thread);
- ``Conductor._tp_to_callback`` and ``_tp_to_callback_lock`` (each partition's delivery
  callback looked up once per fetched batch, as ``Conductor.on_message`` does per message);
- ``Stream.ack`` mirrored by :func:`ack_events` (``Message.ack`` once per event, the
  stream's sensors only when there are any to tell).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from faust.sensors import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, EventT, Message, StreamT
from mode import ServiceT


class QuietMonitor(Monitor):
    """faust's default sensor, without its per-message bookkeeping.

    faust's ``Monitor`` counts and times every message and event (for its web
    views, which the worker does not serve): four calls and a dict per event on
    the worker's hottest path. The worker's own metrics come from its counters.
    Everything else the monitor records (commits, sends, rebalances) it still does.
    """

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """Nothing kept per message."""

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT, event: EventT) -> None:
        """Nothing kept per event."""
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: StreamT, event: EventT, state: dict[Any, Any] | None = None
    ) -> None:
        """Nothing kept per event."""

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        """Nothing kept per message."""


def _quiet(stream: StreamT) -> bool:
    """True when every sensor of the stream's app ignores single events (acks need not tell them)."""
    app = getattr(stream, "app", None)  # None: not a faust stream (tests)
    return app is not None and all(isinstance(sensor, QuietMonitor) for sensor in app.sensors)


async def ack_events(stream: StreamT, events: Sequence[EventT]) -> None:
    """Acknowledge ``events`` of ``stream`` as ``await stream.ack(event)`` does, each in turn.

    ``Stream.ack`` is ``event.ack()`` (``Message.ack`` with the app's consumer:
    the reference count, and the consumer's acked offsets when it reaches zero)
    followed by the sensors' ``on_stream_event_out`` and ``on_message_out``.
    With only a :class:`QuietMonitor` to tell, the sensor calls do nothing and
    are left out: one ``Message.ack`` per event instead of six calls.
    """
    if not _quiet(stream):
        for event in events:
            await stream.ack(event)
        return
    consumer = stream.app.consumer
    for event in events:
        event.message.ack(consumer)


class ReadCommittedConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's consumer thread, with its aiokafka consumer reading ``read_committed``.

    faust picks ``read_committed`` only together with its own transactions
    (``processing_guarantee="exactly_once"``, which this project does not use):
    the flag is raised just while the consumer is built, so nothing else of
    faust sees it.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        faust_consumer = self.consumer
        faust_consumer.in_transaction = True
        try:
            return super()._create_worker_consumer(transport)
        finally:
            faust_consumer.in_transaction = False


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
    commit bookkeeping, the conductor's callback of each partition, looked up
    once per batch rather than once per message) inside one ``wait_first``, so a
    rebalance, stop or crash still cancels a delivery that is blocked. Messages
    left undelivered are simply not marked read; faust seeks back to the
    committed offsets after a rebalance, as it does for the per-message guard.
    """

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        callback = self.callback  # the conductor's on_message
        client_only = self.app.client_only  # then the conductor looks partitions up as partition 0
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set  # type: ignore[attr-defined]
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        conductor = self.app.topics
        acks_enabled_for = conductor.acks_enabled_for
        yield_every = 100  # as faust does: let the streams run during long batches

        async def callbacks_of(batch: list[tuple[TP, Message]]) -> dict[TP, Any]:
            """What ``conductor.on_message`` looks up for each message, once per partition.

            The channels of a partition change only when topics are subscribed, under the lock.
            """
            tps = {tp for tp, _ in batch}
            if client_only:
                return dict.fromkeys(tps, callback)
            async with conductor._tp_to_callback_lock:  # type: ignore[attr-defined]
                return {tp: conductor._tp_to_callback[tp] for tp in tps}  # type: ignore[attr-defined]

        async def deliver(batch: list[tuple[TP, Message]]) -> None:
            callbacks = await callbacks_of(batch)
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
                await callbacks[tp](message)
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
        loop = self.transport.batch_loop  # type: ignore[attr-defined]
        if loop is None:
            await super().wait_empty()
            return
        # Events already delivered to the agent's stream are processed meanwhile: each of
        # their batches is committed as soon as it is held.
        loop.draining += 1  # a rebalance's wait and a stop's may overlap
        try:
            await loop.flush()
            await super().wait_empty()
        finally:
            loop.draining -= 1


class BatchDeliveryTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport with :class:`BatchDeliveryConsumer` as its consumer."""

    Consumer = BatchDeliveryConsumer
    #: The worker's batch loop, whose held events ``BatchDeliveryConsumer.wait_empty`` commits first.
    batch_loop: Any = None


def read_position(consumer: Any, tp: TP) -> int | None:
    """The next offset of ``tp`` to read: after the last delivered, else as committed; None if neither."""
    read = consumer._read_offset.get(tp)
    if read is not None:
        return int(read) + 1
    return committed_position(consumer, tp)


def committed_position(consumer: Any, tp: Any) -> int | None:
    """The next offset of ``tp`` as committed, else the one after the last delivered; None if neither."""
    done = consumer._committed_offset.get(tp)
    if done is None:
        read = consumer._read_offset.get(tp)
        done = None if read is None else read + 1
    return done


def read_to_end(consumer: Any, tp: TP) -> bool:
    """True when the consumer has read ``tp`` up to its high watermark (as of its last fetch)."""
    high = consumer.highwater(tp)
    if high is None:
        return False
    position = read_position(consumer, tp)
    return high == 0 or (position is not None and position >= high)
