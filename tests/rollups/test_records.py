"""Record batches: queued per topic partition, sent as whole batches, in order, tombstones kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pipeline.consume import assign_topics, make_reader
from pipeline.produce import make_producer
from pipeline.rollups.records import RecordBatches
from pipeline.settings import Settings
from tests.kafka_helpers import isolated_env, new_topic, settings_from


def test_count_follows_add_and_extend_and_send_empties_the_queue() -> None:
    batches = RecordBatches()
    batches.add("t", 0, b"k", b"v")
    batches.extend("t", 1, [(b"a", b"1"), (b"b", None)])
    assert batches.count == 3
    sent: list[tuple[Any, ...]] = []

    class Recorder:
        """A producer without record batches: the one-by-one path of ``send``."""

        async def send(self, *args: Any) -> asyncio.Future[None]:
            sent.append(args)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

    futures = asyncio.run(batches.send(Recorder()))
    assert len(futures) == 3
    assert sent == [
        ("t", b"k", b"v", 0, None, None),
        ("t", b"a", b"1", 1, None, None),
        ("t", b"b", None, 1, None, None),
    ]
    assert batches.count == 0
    assert asyncio.run(batches.send(Recorder())) == []


async def _round_trip(
    settings: Settings, topic: str, records: dict[int, list[tuple[bytes, bytes | None]]]
) -> int:
    batches = RecordBatches()
    for partition, items in records.items():
        half = len(items) // 2
        for key, value in items[:half]:
            batches.add(topic, partition, key, value)
        batches.extend(topic, partition, items[half:])
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = await batches.send(producer)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(futures)


async def _read(settings: Settings, topic: str, expected: int) -> dict[int, list[tuple[bytes, bytes | None]]]:
    consumer = make_reader(settings)
    await consumer.start()
    try:
        await assign_topics(consumer, [topic])
        found: dict[int, list[tuple[bytes, bytes | None]]] = {}
        while sum(map(len, found.values())) < expected:
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                found.setdefault(tp.partition, []).extend((m.key, m.value) for m in messages)
        return found
    finally:
        await consumer.stop()


@pytest.mark.kafka
def test_records_reach_their_partitions_in_order_over_several_batches(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    topic = asyncio.run(new_topic(settings, "records", partitions=2))
    # 100 KiB values: the producer's 256 KiB batches fill after two, so each partition needs many.
    big = b"x" * 100_000
    records: dict[int, list[tuple[bytes, bytes | None]]] = {
        0: [(f"a{i}".encode(), big + str(i).encode()) for i in range(12)],
        1: [(b"t", b"first"), (b"t", None), (b"u", b"after the tombstone")],
    }
    submitted = asyncio.run(_round_trip(settings, topic, records))
    assert submitted > 2  # partition 0 went out in more than one batch
    assert asyncio.run(asyncio.wait_for(_read(settings, topic, 15), 60)) == records
