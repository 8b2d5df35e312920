"""Placing keyed records: aiokafka's default partitioner against pipeline.partitioning.KeyPartitioner.

Both place a key by its Kafka murmur2 hash; the benchmark checks they agree on
every key, then measures, in the same run:

(a) the partitioner call alone, µs per key: aiokafka's; ours on keys it has
    not kept yet (the hash computed); ours on keys it keeps (the merge stage
    upserts the same window keys at every flush, a session's actions share
    its key);
(b) a whole send through an aiokafka producer to the local broker, CPU µs per
    record, with each partitioner, records awaited in batches of 1,000.

Each side goes first in every other run.

Two kinds of keys: rollup upsert keys (about 110 bytes of JSON) and session
ids (36 bytes). Medians of --runs runs with their spread; compare the ratios.

    python bench/placement.py [--keys 5000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from pipeline.partitioning import KeyPartitioner
from pipeline.rollups.partials import RollupKey
from pipeline.settings import load_settings

PARTITIONS = list(range(12))
ORDER = [
    "aiokafka",
    "ours, new keys",
    "ours, kept keys",
    "send, aiokafka's partitioner",
    "send, ours (kept keys)",
]


def upsert_keys(n: int) -> list[bytes]:
    """Keys of the merge stage's rollup upserts, one per minute and country."""
    countries = ["FR", "DE", "US", "BR", "JP", "GB", "IN", "ES", "IT", "CA"]
    return [
        RollupKey(
            "cart_value_by_country",
            "1m",
            1764331200000 + (i // len(countries)) * 60_000,
            (("geo.country", countries[i % len(countries)]),),
        ).encode()
        for i in range(n)
    ]


def session_keys(n: int) -> list[bytes]:
    return [str(uuid.UUID(int=i * 7919 + 1)).encode() for i in range(n)]


def per_key(call: Callable[[bytes], int], keys: list[bytes]) -> float:
    started = time.process_time()
    for key in keys:
        call(key)
    return (time.process_time() - started) / len(keys) * 1e6


def partitioner_calls(keys: list[bytes], ours_first: bool) -> dict[str, float]:
    default = DefaultPartitioner()
    ours = KeyPartitioner(keep=len(keys) + 1)
    figures: dict[str, float] = {}
    for side in ("ours", "aiokafka") if ours_first else ("aiokafka", "ours"):
        if side == "aiokafka":
            figures["aiokafka"] = per_key(lambda k: default(k, PARTITIONS, PARTITIONS), keys)
        else:
            figures["ours, new keys"] = per_key(lambda k: ours(k, PARTITIONS, PARTITIONS), keys)
            figures["ours, kept keys"] = per_key(lambda k: ours(k, PARTITIONS, PARTITIONS), keys)
    return figures


async def sends(bootstrap: list[str], topic: str, keys: list[bytes], partitioner: object) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, partitioner=partitioner)
    await producer.start()
    try:
        value = b"x" * 600
        await producer.send_and_wait(topic, value, key=keys[0])
        started = time.process_time()
        for first in range(0, len(keys), 1000):
            futures = [await producer.send(topic, value, key=k) for k in keys[first : first + 1000]]
            await asyncio.gather(*futures)
        return (time.process_time() - started) / len(keys) * 1e6
    finally:
        await producer.stop()


async def broker_sends(
    bootstrap: list[str], topic: str, keys: list[bytes], ours_first: bool
) -> dict[str, float]:
    ours = KeyPartitioner()
    await sends(bootstrap, topic, keys, ours)  # keeps every key's hash
    figures: dict[str, float] = {}
    for side in ("ours", "aiokafka") if ours_first else ("aiokafka", "ours"):
        if side == "aiokafka":
            figures["send, aiokafka's partitioner"] = await sends(
                bootstrap, topic, keys, DefaultPartitioner()
            )
        else:
            figures["send, ours (kept keys)"] = await sends(bootstrap, topic, keys, ours)
    return figures


async def topic_admin(bootstrap: list[str], topic: str, create: bool) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(topic, len(PARTITIONS), replication_factor=1)])
        else:
            await admin.delete_topics([topic])
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=5000, help="keys of each kind")
    parser.add_argument("--runs", type=int, default=5, help="runs (medians reported)")
    args = parser.parse_args()
    bootstrap = load_settings().bootstrap_servers  # RUM_KAFKA_BOOTSTRAP and the rest, as elsewhere
    topic = f"bench-placement-{uuid.uuid4().hex[:8]}"
    asyncio.run(topic_admin(bootstrap, topic, create=True))
    try:
        for kind, keys in (("upsert keys", upsert_keys(args.keys)), ("session ids", session_keys(args.keys))):
            if not same_placement(kind, keys):
                return 1
            runs: dict[str, list[float]] = {}
            for run in range(args.runs):
                ours_first = run % 2 == 1  # each side goes first in every other run
                figures = partitioner_calls(keys, ours_first)
                figures.update(asyncio.run(broker_sends(bootstrap, topic, keys, ours_first)))
                for name, value in figures.items():
                    runs.setdefault(name, []).append(value)
            report(f"{kind} ({len(keys[0])} bytes), µs per key, median (min-max):", runs)
    finally:
        asyncio.run(topic_admin(bootstrap, topic, create=False))
    return 0


def same_placement(kind: str, keys: list[bytes]) -> bool:
    default, ours = DefaultPartitioner(), KeyPartitioner()
    differ = [k for k in keys if default(k, PARTITIONS, PARTITIONS) != ours(k, PARTITIONS, PARTITIONS)]
    if differ:
        print(f"placement differs for {len(differ)} {kind}, e.g. {differ[0]!r}")
    return not differ


def report(title: str, runs: dict[str, list[float]]) -> None:
    print(title)
    base = statistics.median(runs["aiokafka"])
    send_base = statistics.median(runs["send, aiokafka's partitioner"])
    for name, values in sorted(runs.items(), key=lambda item: ORDER.index(item[0])):
        median = statistics.median(values)
        ratio = median / (send_base if name.startswith("send") else base)
        print(f"  {name:30s} {median:6.2f} ({min(values):.2f}-{max(values):.2f})  x{ratio:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
