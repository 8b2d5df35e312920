"""Where a worker's outputs go: one Kafka transaction per raw partition, or plain writes.

Exactly once (the default), after Kafka Streams' first exactly-once design:
each raw partition has a transactional producer of its own, with the
transactional id ``<app id>.<raw topic>.<partition>``. Everything that comes
from the partition's actions — enriched actions, bad rows, late actions, rollup
state and partials — is written inside that producer's open transaction, and
the transaction commits together with the partition's consumed offset
(:meth:`PartitionWriters.commit`). A reader with ``isolation.level =
read_committed`` sees all of it or none of it.

Fencing: a worker given a partition starts its producer before it reads the
partition's state (:meth:`PartitionWriters.ensure`). Kafka then bumps the
producer epoch of that transactional id and aborts whatever transaction the
previous owner left open, so a previous owner that is still alive (paused past
its session timeout, say) can no longer write or commit: its next send or
commit fails with ``ProducerFenced``, which :class:`Fenced` reports.

At least once: one plain producer for every partition; ``commit`` only waits
for the writes, and the caller commits the consumer's offsets afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    InvalidProducerEpoch,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from pipeline.kafka_auth import client_kwargs
from pipeline.partitioning import KeyPartitioner
from pipeline.rollups.records import RecordBatches
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: Largest record batch a worker's producer builds: many records per request, and still
#: below Kafka's default 1 MiB message limit of topics created without one.
MAX_BATCH_BYTES = 512 * 1024
#: Largest request (a record larger than a batch travels alone): the 8 MiB raw and bad-row topics.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: Errors that mean another producer took the transactional id over.
FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch, TransactionalIdAuthorizationFailed)


class Fenced(Exception):
    """The partition's transactional id was taken over: this worker lost the partition."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"raw partition {partition} was taken over by another worker")
        self.partition = partition


def transactional_id(settings: Settings, raw_topic: str, partition: int) -> str:
    """The transactional id of a raw partition: the same for every worker of the group."""
    return f"{settings.kafka.app_id}.{raw_topic}.{partition}"


def make_producer(settings: Settings, txn_id: str | None = None) -> AIOKafkaProducer:
    """A producer for a worker's outputs (transactional when ``txn_id`` is given)."""
    kwargs: dict[str, Any] = {}
    if txn_id is not None:
        kwargs["transactional_id"] = txn_id
    else:
        kwargs["enable_idempotence"] = True
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        max_batch_size=MAX_BATCH_BYTES,
        max_request_size=MAX_REQUEST_BYTES,
        partitioner=KeyPartitioner(),
        **kwargs,
        **client_kwargs(settings),
    )


class Outputs:
    """The records one partition's batch writes, grouped for sending in record batches."""

    def __init__(self) -> None:
        self.batches = RecordBatches()
        #: Records without a partition of their own (placed by key): bad rows, late actions.
        self.keyed: list[tuple[str, bytes | None, bytes]] = []

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        """A record for ``partition`` of ``topic``."""
        self.batches.add(topic, partition, key, value)  # type: ignore[arg-type]

    def add_keyed(self, topic: str, key: bytes | None, value: bytes) -> None:
        """A record placed by its key, as Kafka's default partitioner would."""
        self.keyed.append((topic, key, value))

    def __bool__(self) -> bool:
        return bool(self.batches.count or self.keyed)

    async def send(self, producer: AIOKafkaProducer) -> list[Any]:
        """Submit every record; the futures resolve once Kafka has them."""
        futures = await self.batches.send(producer)
        keyed, self.keyed = self.keyed, []
        for topic, key, value in keyed:
            futures.append(await producer.send(topic, value, key=key))
        return futures


def _retrieve(future: Any) -> None:
    """Mark a dropped send's outcome as seen (its partition's transaction is abandoned)."""
    if not future.cancelled():
        future.exception()


async def _all_or_first_error(futures: list[Any]) -> None:
    """Wait for every future; raise the first error once all are done (none left unseen)."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class PartitionWriters:
    """Writes each raw partition's outputs, in transactions or plainly (``exactly_once``)."""

    def __init__(self, settings: Settings, raw_topic: str, group_id: str) -> None:
        self.settings = settings
        self.raw_topic = raw_topic
        self.group_id = group_id
        self.exactly_once = settings.worker.processing_guarantee == "exactly_once"
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._shared: AIOKafkaProducer | None = None
        #: Acknowledgement futures of records sent since each partition's last commit.
        self._pending: dict[int, list[Any]] = {}
        #: The consumer generation each partition's producer was started under (None: unknown).
        self._generations: dict[int, int | None] = {}
        #: Partitions whose producer was fenced by a send (``commit`` reports it).
        self._fenced: set[int] = set()
        #: Partitions whose producer has a transaction open.
        self._in_transaction: set[int] = set()
        self._lock = asyncio.Lock()
        self.counts = {"commits": 0, "fenced": 0, "aborts": 0}

    @property
    def partitions(self) -> set[int]:
        """The raw partitions with a producer here."""
        return set(self._producers)

    def stale(self, partitions: Iterable[tuple[int, int | None]]) -> bool:
        """True when a (partition, consumer generation) has a producer started under another generation."""
        return self.exactly_once and any(
            g is not None and p in self._producers and self._generations.get(p) not in (None, g)
            for p, g in partitions
        )

    async def ensure(self, partitions: Iterable[tuple[int, int | None]]) -> None:
        """Start a producer, in an open transaction, for each (partition, generation) without one.

        Starting a transactional producer fences every earlier producer of its id:
        call this before the partition's state is read, so that the state read is
        the one the previous owner committed last, never one it is still writing.
        A partition seen under a new consumer generation gets a new producer too
        (commit what it holds first, see ``stale``): another worker may have owned
        it meanwhile and fenced the old one. Generation None keeps any producer.
        """
        if not self.exactly_once:
            if self._shared is None:
                producer = make_producer(self.settings)
                await producer.start()
                self._shared = producer
            return
        wanted = dict(partitions)
        for partition, generation in sorted(wanted.items()):
            known = self._generations.get(partition)
            if partition in self._producers and generation is not None and known not in (None, generation):
                await self.discard(partition, abort=True)
        missing = sorted(set(wanted) - set(self._producers))
        if not missing:
            return
        async with self._lock:
            started = await asyncio.gather(*(self._start(p) for p in missing if p not in self._producers))
        for partition, producer in started:
            self._producers[partition] = producer
            self._generations[partition] = wanted[partition]
            self._in_transaction.add(partition)

    async def _start(self, partition: int) -> tuple[int, AIOKafkaProducer]:
        producer = make_producer(self.settings, transactional_id(self.settings, self.raw_topic, partition))
        await producer.start()
        try:
            # Waits for the producer id: the fencing of earlier owners is done once it returns.
            await producer.begin_transaction()
        except BaseException:
            await producer.stop()
            raise
        return partition, producer

    def producer(self, partition: int) -> AIOKafkaProducer:
        """The producer that writes ``partition``'s outputs (``ensure`` first)."""
        if not self.exactly_once:
            assert self._shared is not None, "ensure() first"
            return self._shared
        return self._producers[partition]

    async def _open(self, partition: int) -> AIOKafkaProducer:
        producer = self.producer(partition)
        if self.exactly_once and partition not in self._in_transaction:
            await producer.begin_transaction()
            self._in_transaction.add(partition)
        return producer

    async def send(self, partition: int, outputs: Outputs) -> None:
        """Send ``outputs`` of ``partition`` (in its open transaction); ``commit`` waits for them."""
        if not outputs:
            return
        if partition in self._fenced:
            return  # lost already: ``commit`` says so
        try:
            producer = await self._open(partition)
            futures = await outputs.send(producer)
        except FENCED_ERRORS:
            self._fenced.add(partition)
            return
        self._pending.setdefault(partition, []).extend(futures)

    async def commit(self, partition: int, next_offset: int | None) -> None:
        """Make everything sent for ``partition`` visible, with the raw offset to resume from.

        ``next_offset`` None commits the outputs without moving the offset. Raises
        :class:`Fenced` when another worker has taken the partition over; any
        other failure aborts the transaction (nothing of it is visible) and is
        raised.
        """
        pending = self._pending.pop(partition, [])
        if partition in self._fenced:
            self._fenced.discard(partition)
            self.counts["fenced"] += 1
            await self.discard(partition)
            raise Fenced(partition)
        if not self.exactly_once:
            await _all_or_first_error(pending)
            return
        producer = await self._open(partition)
        try:
            await _all_or_first_error(pending)
            if next_offset is not None:
                offsets = {TopicPartition(self.raw_topic, partition): next_offset}
                await producer.send_offsets_to_transaction(offsets, self.group_id)
            await producer.commit_transaction()
            self._in_transaction.discard(partition)
        except FENCED_ERRORS as exc:
            self.counts["fenced"] += 1
            await self.discard(partition)
            raise Fenced(partition) from exc
        except BaseException:
            self.counts["aborts"] += 1
            await self.discard(partition, abort=True)
            raise
        self.counts["commits"] += 1

    async def discard(self, partition: int, abort: bool = False) -> None:
        """Stop ``partition``'s producer (aborting its open transaction when ``abort``)."""
        producer = self._producers.pop(partition, None)
        self._generations.pop(partition, None)
        for future in self._pending.pop(partition, []):
            future.add_done_callback(_retrieve)
        in_transaction = partition in self._in_transaction
        self._in_transaction.discard(partition)
        if producer is None:
            return
        if abort and in_transaction:
            try:
                await asyncio.wait_for(producer.abort_transaction(), 10)
            except Exception as exc:  # the broker may be the reason we are here: the next owner aborts it
                log.warning("could not abort the transaction of raw partition %d: %s", partition, exc)
        await producer.stop()

    async def release(self, partitions: Iterable[int]) -> None:
        """Stop the producers of partitions this worker no longer owns (their work is committed)."""
        for partition in sorted(set(partitions) & set(self._producers)):
            await self.discard(partition, abort=True)

    async def close(self) -> None:
        """Stop every producer."""
        for partition in list(self._producers):
            await self.discard(partition, abort=True)
        if self._shared is not None:
            await self._shared.stop()
            self._shared = None
