"""Reading topics as a downstream consumer: assignment of every partition of a topic."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.aiokafka_private import refresh_topic_metadata
from pipeline.kafka_auth import client_kwargs
from pipeline.settings import Settings


def make_reader(
    settings: Settings, isolation_level: str = "read_committed", max_wait_ms: int = 500
) -> AIOKafkaConsumer:
    """A consumer outside any group that reads what it is assigned (start it before use).

    Fetch limits match the 8 MiB raw and bad-row topics, so an oversized
    record never stalls a reader. ``read_committed`` skips records of open and
    aborted transactions. ``max_wait_ms`` is how long the broker holds a fetch
    open waiting for new records: readers that stop at a known end offset want
    it short, since every re-assignment waits out the fetches in flight.
    """
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        fetch_max_wait_ms=max_wait_ms,
        **client_kwargs(settings),
    )


async def group_offsets(settings: Settings, group: str) -> dict[TopicPartition, int]:
    """The offsets consumer group ``group`` has committed: partition -> next offset it reads."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **client_kwargs(settings))
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items()}


async def topic_partitions(
    consumer: AIOKafkaConsumer, topic: str, timeout: float = 30
) -> list[TopicPartition]:
    """Every partition of ``topic``, waiting up to ``timeout`` s for its metadata.

    A consumer without a subscription knows only the topics it has asked for,
    and aiokafka has no public call that refreshes them, hence
    :func:`~pipeline.aiokafka_private.refresh_topic_metadata`. A
    just-restarted broker may need a moment too.
    """
    deadline = time.monotonic() + timeout
    while True:
        await refresh_topic_metadata(consumer, topic)
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic} has no partitions (does it exist?)")
        await asyncio.sleep(0.5)


async def assign_topics(
    consumer: AIOKafkaConsumer, topics: list[str], start: str = "beginning", add: bool = False
) -> None:
    """Assign every partition of ``topics``, positioned at their ``beginning`` or current ``end``.

    With ``add``, the partitions join those already assigned (which keep their positions).
    """
    parts = [tp for topic in topics for tp in await topic_partitions(consumer, topic)]
    ends = await consumer.end_offsets(parts) if start == "end" else {}
    kept = {tp: await consumer.position(tp) for tp in consumer.assignment()} if add else {}
    consumer.assign([*kept, *parts])
    for tp, position in kept.items():
        consumer.seek(tp, position)
    if start == "end":
        for tp in parts:
            consumer.seek(tp, ends[tp])
    else:
        await consumer.seek_to_beginning(*parts)


async def record_timestamps(settings: Settings, topic: str, expected: int, timeout: float) -> list[int]:
    """The timestamps (ms) of ``topic``'s records from the beginning, sorted, once ``expected`` arrived.

    Raises RuntimeError when fewer arrive within ``timeout`` seconds.
    """
    consumer = make_reader(settings)
    await consumer.start()
    try:
        await assign_topics(consumer, [topic])
        stamps: list[int] = []
        deadline = time.monotonic() + timeout
        while len(stamps) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=20000)
            for records in batch.values():
                stamps.extend(r.timestamp for r in records)
        if len(stamps) < expected:
            raise RuntimeError(f"only {len(stamps)} of {expected} records reached {topic} in {timeout} s")
        return sorted(stamps)
    finally:
        await consumer.stop()
