"""Keyed records from the pipeline's producers land where an independent client (kcat) puts them."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.produce import make_producer
from pipeline.rollups.partials import RollupKey
from pipeline.settings import Settings
from tests.kafka_helpers import BOOTSTRAP, isolated_env, kcat, kcat_lines, settings_from

pytestmark = pytest.mark.kafka

PARTITIONS = 12


def _keys() -> list[bytes]:
    sessions = [f"3f2a9c1e-5b7d-4e8f-9a0b-{i:012d}".encode() for i in range(150)]
    upserts = [
        RollupKey(
            "cart_value_by_country", interval, 1764331200000 + hour * 3_600_000, (("geo.country", c),)
        ).encode()
        for interval in ("1m", "1h")
        for hour in range(10)
        for c in ("FR", "DE", "US", "BR", "JP")
    ]
    return sessions + upserts + [b"a", b"ab", b"abc"]


async def _create(settings: Settings, *topics: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, replication_factor=1) for t in topics])
    finally:
        await admin.close()


async def _produce(settings: Settings, topic: str, keys: list[bytes]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for key in keys + keys:  # the second time from the kept hashes
            await producer.send(topic, b"ours", key=key)
        await producer.flush()
    finally:
        await producer.stop()


def _placement(topic: str, expected: int) -> dict[bytes, set[int]]:
    placed: dict[bytes, set[int]] = {}
    lines = kcat_lines(topic, "%p\t%k\n")
    assert len(lines) == expected, (topic, len(lines))
    for line in lines:
        partition, key = line.split(b"\t", 1)
        placed.setdefault(key, set()).add(int(partition))
    return placed


def test_keys_are_placed_as_by_the_java_compatible_partitioner(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    ours, theirs = settings.topic("placement.ours"), settings.topic("placement.kcat")
    keys = _keys()
    asyncio.run(_create(settings, ours, theirs))
    asyncio.run(_produce(settings, ours, keys))
    # librdkafka's murmur2_random is its Java-client-compatible placement of keyed records.
    subprocess.run(
        [kcat(), "-P", "-b", BOOTSTRAP, "-t", theirs, "-K", "\t", "-X", "topic.partitioner=murmur2_random"],
        input=b"".join(key + b"\tkcat\n" for key in keys),
        timeout=60,
        check=True,
    )
    placed_ours = _placement(ours, 2 * len(keys))
    placed_kcat = _placement(theirs, len(keys))
    assert set(placed_ours) == set(keys)
    assert all(len(partitions) == 1 for partitions in placed_ours.values())  # a key stays in one partition
    assert placed_ours == placed_kcat
    assert len(set().union(*placed_kcat.values())) == PARTITIONS  # spread over every partition
