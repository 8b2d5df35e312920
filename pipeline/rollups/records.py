"""Sending many records at once: one Kafka record batch per topic partition.

A rollup flush writes thousands of small records (partials, their changelog
copies). ``producer.send`` costs ~15 µs of Python per record (a future, a
partition lookup and an accumulator call each); appending to aiokafka's
``BatchBuilder`` and submitting whole batches costs a third of that. Ordering
within a topic partition is kept: records are appended, and batches submitted,
in the order they were added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


def kafka_producer(producer: Any) -> Any | None:
    """The aiokafka producer behind faust's producer, or None when there is none to batch with."""
    if hasattr(producer, "create_batch") and hasattr(producer, "send_batch"):
        return producer  # already an AIOKafkaProducer
    ensure = getattr(producer, "_ensure_producer", None)  # faust's aiokafka driver
    inner = ensure() if callable(ensure) else None
    return inner if hasattr(inner, "create_batch") else None


class RecordBatches:
    """Records to send, grouped per (topic, partition); ``send`` submits them as record batches."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        self.count = 0

    def add(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue one record (``value`` None: a tombstone)."""
        records = self._records.get((topic, partition))
        if records is None:
            self._records[(topic, partition)] = records = []
        records.append((key, value))
        self.count += 1

    def extend(self, topic: str, partition: int, items: list[tuple[bytes, bytes | None]]) -> None:
        """Queue many records of one (topic, partition) at once."""
        records = self._records.get((topic, partition))
        if records is None:
            self._records[(topic, partition)] = records = []
        records.extend(items)
        self.count += len(items)

    async def send(self, producer: Any) -> list[Awaitable[Any]]:
        """Submit every queued record; the futures resolve once Kafka has acknowledged them.

        ``producer`` is faust's producer (or an AIOKafkaProducer). Without an
        aiokafka producer to batch with, records go one by one through ``send``.
        """
        records, self._records = self._records, {}
        self.count = 0
        inner = kafka_producer(producer)
        futures: list[Awaitable[Any]] = []
        for (topic, partition), items in records.items():
            if inner is None:
                for key, value in items:
                    futures.append(await producer.send(topic, key, value, partition, None, None))
                continue
            batch = inner.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: submit it
                    futures.append(await inner.send_batch(batch, topic, partition=partition))
                    batch = inner.create_batch()
                    batch.append(key=key, value=value, timestamp=None)  # the first record always fits
            futures.append(await inner.send_batch(batch, topic, partition=partition))
        return futures

    async def send_and_wait(self, producer: Any) -> None:
        """``send``, then wait for every acknowledgement (raises the first delivery error)."""
        await asyncio.gather(*await self.send(producer))
