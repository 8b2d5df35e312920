"""Downstream reading on the real broker: assignment at the beginning or end, adding topics, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.consume import assign_topics, group_offsets, make_reader, record_timestamps, topic_partitions
from pipeline.produce import make_producer
from pipeline.settings import Settings
from tests.kafka_helpers import isolated_env, new_topic, settings_from

pytestmark = pytest.mark.kafka


async def _send(settings: Settings, topic: str, values: list[bytes], timestamp_ms: int | None = None) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for i, value in enumerate(values):
            stamp = None if timestamp_ms is None else timestamp_ms - i
            await producer.send_and_wait(topic, value, partition=i % 2, timestamp_ms=stamp)
    finally:
        await producer.stop()


async def _drain(consumer: AIOKafkaConsumer, expected: int) -> list[bytes]:
    values: list[bytes] = []
    while len(values) < expected:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            values.extend(r.value for r in records)
    # Nothing beyond what was expected turns up.
    for records in (await consumer.getmany(timeout_ms=500)).values():
        values.extend(r.value for r in records)
    return sorted(values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_from(isolated_env(tmp_path))


def test_beginning_end_and_added_topics(settings: Settings) -> None:
    async def run() -> None:
        first = await new_topic(settings, "first", partitions=2)
        second = await new_topic(settings, "second", partitions=2)
        await _send(settings, first, [b"a", b"b", b"c"])
        await _send(settings, second, [b"x"])
        consumer = make_reader(settings)
        await consumer.start()
        try:
            assert await topic_partitions(consumer, first) == [
                TopicPartition(first, 0),
                TopicPartition(first, 1),
            ]
            await assign_topics(consumer, [first])
            assert await _drain(consumer, 3) == [b"a", b"b", b"c"]
            await assign_topics(consumer, [second], start="end", add=True)
            assert {tp.topic for tp in consumer.assignment()} == {first, second}
            await _send(settings, first, [b"d"])
            await _send(settings, second, [b"y"])
            # The first topic kept its position (only "d" is new); the second starts at its end.
            assert await _drain(consumer, 2) == [b"d", b"y"]
            await assign_topics(consumer, [second])  # without add: only this topic, from its beginning
            assert {tp.topic for tp in consumer.assignment()} == {second}
            assert await _drain(consumer, 2) == [b"x", b"y"]
        finally:
            await consumer.stop()

    asyncio.run(asyncio.wait_for(run(), 120))


def test_a_missing_topic_is_a_lookup_error(settings: Settings) -> None:
    async def run() -> None:
        consumer = make_reader(settings)
        await consumer.start()
        try:
            with pytest.raises(LookupError, match=r"topic \S+nowhere has no partitions"):
                await topic_partitions(consumer, settings.topic("nowhere"), timeout=1)
        finally:
            await consumer.stop()

    asyncio.run(run())


def test_record_timestamps_are_sorted_and_a_shortfall_is_an_error(settings: Settings) -> None:
    topic = asyncio.run(new_topic(settings, "stamped", partitions=2))
    asyncio.run(_send(settings, topic, [b"1", b"2", b"3"], timestamp_ms=1_764_340_000_000))
    stamps = asyncio.run(record_timestamps(settings, topic, 3, timeout=30))
    assert stamps == [1_764_340_000_000 - 2, 1_764_340_000_000 - 1, 1_764_340_000_000]
    with pytest.raises(RuntimeError, match=r"only 3 of 4 records reached"):
        asyncio.run(record_timestamps(settings, topic, 4, timeout=2))


def test_group_offsets_are_the_committed_positions(settings: Settings) -> None:
    async def run() -> dict[TopicPartition, int]:
        topic = await new_topic(settings, "grouped", partitions=2)
        group = settings.topic("group")
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group)
        await consumer.start()
        try:
            offsets = {TopicPartition(topic, 0): 5, TopicPartition(topic, 1): 9}
            consumer.assign(list(offsets))
            await consumer.commit(offsets)
        finally:
            await consumer.stop()
        return await group_offsets(settings, group)

    found = asyncio.run(run())
    assert {(tp.partition, offset) for tp, offset in found.items()} == {(0, 5), (1, 9)}
    assert asyncio.run(group_offsets(settings, settings.topic("no-such-group"))) == {}
