"""Kafka administration: reachability checks and idempotent topic creation."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.errors import KafkaUnavailableError, PipelineError
from pipeline.kafka_auth import client_kwargs, describe_failure
from pipeline.settings import Settings
from pipeline.topics import topic_specs


async def check_reachable(settings: Settings, timeout: float = 15.0) -> None:
    """Raise KafkaUnavailableError unless the cluster answers a metadata request in time."""
    client = AIOKafkaClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=int(timeout * 1000),
        **client_kwargs(settings),
    )
    # aiokafka logs every failed attempt; the one line raised below says it all.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
    except Exception as exc:
        # A failed login or TLS handshake is not "unreachable": say which setting to fix.
        reason = None if isinstance(exc, asyncio.TimeoutError) else await describe_failure(settings)
        if reason:
            raise KafkaUnavailableError(f"cannot connect to Kafka at {reason}") from None
        protocol = settings.kafka.security_protocol
        hint = f", security protocol {protocol}" if protocol != "PLAINTEXT" else ""
        raise KafkaUnavailableError(
            f"cannot reach Kafka at {settings.kafka.bootstrap} within {timeout:.0f} s "
            f"({type(exc).__name__}{hint}); start one with 'make broker' or set RUM_KAFKA_BOOTSTRAP"
        ) from None
    finally:
        kafka_log.setLevel(level)
        await client.close()


@dataclass(frozen=True)
class TopicResult:
    """What `create_topics` did for one topic."""

    name: str
    partitions: int
    created: bool
    note: str = ""


async def create_topics(settings: Settings) -> list[TopicResult]:
    """Create every topic that is missing; existing topics are left as they are."""
    await check_reachable(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **client_kwargs(settings))
    await admin.start()
    try:
        names = [name for name, _ in topic_specs(settings)]
        present = set(await admin.list_topics()) & set(names)
        existing = await admin.describe_topics(sorted(present)) if present else []
        partitions = {t["topic"]: len(t["partitions"]) for t in existing if t.get("error_code", 0) == 0}
        results: list[TopicResult] = []
        for name, spec in topic_specs(settings):
            if name in partitions:
                note = ""
                if partitions[name] != settings.kafka.partitions:
                    note = f"has {partitions[name]} partitions, settings say {settings.kafka.partitions}"
                results.append(TopicResult(name, partitions[name], False, note))
                continue
            new = NewTopic(
                name,
                settings.kafka.partitions,
                settings.kafka.replication_factor,
                topic_configs=spec.kafka_configs(),
            )
            response = await admin.create_topics([new])
            # aiokafka reports per-topic errors in the response instead of raising.
            for _topic, code, *rest in response.topic_errors:
                if code == TopicAlreadyExistsError.errno:  # created concurrently by another worker
                    results.append(TopicResult(name, settings.kafka.partitions, False))
                elif code:
                    message = rest[0] if rest else ""
                    raise PipelineError(f"cannot create topic {name}: error {code} {message}")
                else:
                    results.append(TopicResult(name, settings.kafka.partitions, True))
        await wait_for_leaders(settings, [r.name for r in results])
        return results
    finally:
        await admin.close()


async def wait_for_leaders(settings: Settings, topics: list[str], timeout: float = 30.0) -> None:
    """Wait until every partition of ``topics`` has a leader in fresh metadata.

    A consumer group that joins while a just-created topic is still unknown
    to the broker's metadata may get an empty assignment and keep it (seen
    with faust: a second worker idled), so workers start only after this.
    """
    client = AIOKafkaClient(bootstrap_servers=settings.bootstrap_servers, **client_kwargs(settings))
    await client.bootstrap()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            cluster = await client.fetch_all_metadata()
            missing = [
                t
                for t in topics
                if not cluster.partitions_for_topic(t)
                or any(
                    cluster.leader_for_partition(TopicPartition(t, p)) in (None, -1)
                    for p in cluster.partitions_for_topic(t)
                )
            ]
            if not missing:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise PipelineError(f"topics without partition leaders after {timeout:.0f} s: {missing}")
            await asyncio.sleep(0.2)
    finally:
        await client.close()
