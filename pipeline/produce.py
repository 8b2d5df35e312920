"""Publishing raw actions to Kafka: from a JSON-lines source or the traffic generator."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import orjson
from aiokafka import AIOKafkaProducer

from pipeline.admin import check_reachable
from pipeline.errors import PipelineError
from pipeline.kafka_auth import client_kwargs
from pipeline.partitioning import KeyPartitioner
from pipeline.settings import Settings

# Gather delivery results in chunks: one await per message would cap the
# producer at the round-trip rate, an unbounded backlog would hold everything.
_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class Message:
    """One message to publish: key, exact value bytes, and its fault kind if malformed."""

    key: bytes | None
    value: bytes
    malformed: str | None = None


@dataclass
class ProduceSummary:
    """What a produce run did."""

    sent: int = 0
    failed: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Messages acknowledged per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def session_key(value: bytes) -> bytes | None:
    """The partition key of a raw action: its ``session.id``, or None when there is none."""
    try:
        event = orjson.loads(value)
        sid = event["session"]["id"]
    except Exception:  # malformed input still gets published, just unkeyed
        return None
    return sid.encode() if isinstance(sid, str) else None


def read_lines(stream: IO[bytes]) -> Iterator[Message]:
    """Messages from a JSON-lines byte stream; blank lines are skipped, lines kept byte-exact."""
    for line in stream:
        value = line.rstrip(b"\r\n")
        if value.strip():
            yield Message(session_key(value), value)


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """A durable producer: acks from all in-sync replicas, idempotent, batched."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=16 * 1024 * 1024,
        partitioner=KeyPartitioner(),  # Kafka's default placement, faster (a session's key recurs)
        **client_kwargs(settings),
    )


async def require_topic(producer: AIOKafkaProducer, topic: str) -> None:
    """Raise PipelineError at once when the broker has no ``topic`` (a send would wait 40 s, then fail).

    The metadata of every topic is fetched rather than of this one: a request
    naming a topic may make a broker with ``auto.create.topics.enable`` create
    it, with the broker's defaults instead of the pipeline's.
    """
    cluster = await producer.client.fetch_all_metadata()
    if topic in cluster.unauthorized_topics:
        raise PipelineError(f"not authorized to use topic {topic} (check the ACLs of this client's user)")
    if not cluster.partitions_for_topic(topic):
        raise PipelineError(
            f"topic {topic} does not exist; create the pipeline's topics with 'rum-pipeline topics create' "
            "(RUM_TOPIC_PREFIX applies), or name an existing topic with --topic"
        )


async def publish(
    settings: Settings,
    topic: str,
    messages: Iterable[Message],
    rate: float = 0.0,
    on_sent: Callable[[int], None] | None = None,
) -> ProduceSummary:
    """Publish every message; wait for every acknowledgement; pace to ``rate`` msg/s if > 0."""
    summary = ProduceSummary()
    # A failed start says only "Unable to bootstrap" (after logging each
    # attempt); this check fails first with the reason (login, TLS, network).
    await check_reachable(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        await require_topic(producer, topic)
    except PipelineError:
        await producer.stop()
        raise
    started = time.monotonic()
    pending: list[asyncio.Future] = []

    async def drain() -> None:
        results = await asyncio.gather(*pending, return_exceptions=True)
        ok = sum(1 for r in results if not isinstance(r, BaseException))
        summary.sent += ok
        summary.failed += len(results) - ok
        if on_sent:
            on_sent(len(results))
        pending.clear()

    try:
        for index, message in enumerate(messages):
            if rate > 0:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    if pending:  # report progress before idling
                        await drain()
                    await asyncio.sleep(delay)
            if message.malformed:
                summary.malformed[message.malformed] += 1
            pending.append(await producer.send(topic, message.value, key=message.key))
            if len(pending) >= _CHUNK:
                await drain()
        if pending:
            await drain()
    finally:
        await producer.stop()
        summary.seconds = time.monotonic() - started
    return summary
