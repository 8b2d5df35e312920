"""The rollup stages' TopicReader against the real broker: many partitions in one pass."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.rollups.stage import TopicReader
from pipeline.settings import Settings
from tests.chaos_helpers import delete_topics
from tests.kafka_helpers import isolated_env, settings_from

pytestmark = pytest.mark.kafka


async def read_many(
    reader: TopicReader, topic: str, partitions: Any
) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """Every record of ``partitions``, collected from ``read_each``."""
    records: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in partitions}
    await reader.read_each(topic, partitions, lambda partition, chunk: records[partition].extend(chunk))
    return records


async def _scenario(settings: Settings) -> None:
    topic = settings.topic("reader")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    reader = TopicReader(settings)
    try:
        # Partition 2 stays empty; 0, 1 and 3 get different numbers of records (1: several fetches).
        sent = {0: 5, 1: 25_000, 3: 1}
        for partition, n in sent.items():
            for i in range(n):
                await producer.send(
                    topic, f"v{partition}-{i}".encode(), key=f"k{i}".encode(), partition=partition
                )
        await producer.flush()
        read = await read_many(reader, topic, [3, 0, 1, 2, 1])
        assert sorted(read) == [0, 1, 2, 3]
        for partition in range(4):
            want = [(f"k{i}".encode(), f"v{partition}-{i}".encode()) for i in range(sent.get(partition, 0))]
            assert read[partition] == want
        # The same records handed over as they are fetched: in order, no chunk above one fetch.
        chunks: list[tuple[int, list[tuple[bytes, bytes | None]]]] = []
        await reader.read_each(topic, [1, 0], lambda partition, chunk: chunks.append((partition, chunk)))
        assert len([chunk for partition, chunk in chunks if partition == 1]) >= 3
        assert max(len(chunk) for _, chunk in chunks) <= 10_000
        joined: dict[int, list[tuple[bytes, bytes | None]]] = {0: [], 1: []}
        for partition, chunk in chunks:
            joined[partition].extend(chunk)
        assert joined == {0: read[0], 1: read[1]}
        # Records written after a read are not in it, and are in the next one (same consumer).
        await producer.send_and_wait(topic, b"late", key=b"k", partition=0)
        assert (await read_many(reader, topic, [0]))[0][-1] == (b"k", b"late")
        assert len((await read_many(reader, topic, [1]))[1]) == 25_000
    finally:
        await reader.close()
        await producer.stop()


def test_read_each_returns_each_partition_in_order(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    try:
        asyncio.run(_scenario(settings))
    finally:
        delete_topics(settings)
