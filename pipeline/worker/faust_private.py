"""Every use of faust-streaming's private API, in one module (faust-streaming is pinned for it).

faust 0.15.3 is pinned in pyproject.toml; ``tests/worker/test_faust_private.py``
fails when an upgrade changes any private name or function used here:

- ``Consumer._drain_messages`` (overridden: one guarded delivery per fetched batch);
- ``Consumer._read_offset``, ``_committed_offset``, ``_commit_every``, ``_n_acked``, ``_add_gap``
  (read and kept as faust keeps them);
- ``AIOKafkaConsumerThread._create_worker_consumer`` and ``Consumer.in_transaction``
  (a worker consumer reading ``read_committed`` without faust's own transactions);
- ``Consumer._new_consumer_thread`` (to use that consumer thread).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message
from mode import ServiceT


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
    commit bookkeeping, same conductor callback) inside one ``wait_first``, so a
    rebalance, stop or crash still cancels a delivery that is blocked. Messages
    left undelivered are simply not marked read; faust seeks back to the
    committed offsets after a rebalance, as it does for the per-message guard.
    """

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

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
