"""Sending many records at once: one Kafka record batch per topic partition.

A rollup flush writes thousands of small records (partials, their changelog
copies). ``producer.send`` costs ~15 µs of Python per record (a future, a
partition lookup and an accumulator call each); appending to aiokafka's
``BatchBuilder`` and submitting whole batches costs a third of that. Ordering
within a topic partition is kept: records are appended, and batches submitted,
in the order they were added.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any


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

        ``producer`` is an AIOKafkaProducer; one without record batches (a test's
        recorder) gets the records one by one through ``send``.
        """
        records, self._records = self._records, {}
        self.count = 0
        batching = hasattr(producer, "create_batch") and hasattr(producer, "send_batch")
        futures: list[Awaitable[Any]] = []
        for (topic, partition), items in records.items():
            if not batching:
                for key, value in items:
                    futures.append(await producer.send(topic, key, value, partition, None, None))
                continue
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: submit it
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)  # the first record always fits
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures
