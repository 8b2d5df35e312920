"""Where accepted events go: the :class:`EventSink` interface and its Kafka implementation.

The HTTP server only knows the interface, so its tests run with a sink kept
in memory; the Kafka sink is exercised against the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

from pipeline.errors import PipelineError
from pipeline.intake.events import Record, Route
from pipeline.settings import Settings
from pipeline.topics import OTHER, RAW

log = logging.getLogger("rum.intake")


class SinkUnavailable(PipelineError):
    """The sink did not acknowledge every record in time: the client must send them again."""


class EventSink(Protocol):
    """Durable destination of accepted records."""

    @property
    def ready(self) -> bool:
        """True when the sink can take records now."""
        ...

    async def write(self, records: Sequence[Record], timestamp_ms: int) -> None:
        """Return once every record is durably stored; raise SinkUnavailable otherwise."""
        ...


class KafkaSink:
    """Produces records to the raw and other-events topics and waits for every acknowledgement.

    The producer is idempotent with acks from all in-sync replicas, so an
    acknowledged record survives a broker failure and a retried send does not
    duplicate it. :meth:`run` connects in the background and keeps trying, so
    the intake serves (with 503s) while Kafka is down.
    """

    def __init__(self, settings: Settings, retry_seconds: float = 1.0) -> None:
        self.settings = settings
        self.topics: dict[Route, str] = {"raw": settings.topic(RAW), "other": settings.topic(OTHER)}
        self.timeout = settings.intake_kafka_timeout
        self.retry_seconds = retry_seconds
        self._producer: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()

    @property
    def ready(self) -> bool:
        """True once the producer is connected."""
        return self._connected.is_set()

    async def run(self) -> None:
        """Connect (retrying until it works), create missing topics, then turn ready and return."""
        from pipeline.produce import make_producer

        warned = False
        while True:
            producer = make_producer(self.settings)
            try:
                await producer.start()
                break
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                if not isinstance(exc, Exception):
                    raise  # cancelled while connecting: the intake is stopping
                if not warned:
                    log.warning(
                        "intake: Kafka at %s is not available (%s); answering 503 until it is",
                        self.settings.kafka_bootstrap,
                        exc,
                    )
                    warned = True
            await asyncio.sleep(self.retry_seconds)
        self._producer = producer
        await self._create_topics()
        self._connected.set()
        log.info("intake: connected to Kafka at %s", self.settings.kafka_bootstrap)

    async def _create_topics(self, attempts: int = 5) -> None:
        """Create missing topics, like a worker does; retried, but never fatal."""
        from pipeline.admin import create_topics

        for attempt in range(1, attempts + 1):
            try:
                await create_topics(self.settings)
                return
            except Exception as exc:
                # A busy cluster times out now and then: try again. If it keeps
                # failing (no permission, say), serve anyway: the topics may
                # exist or be created by `rum-pipeline topics create`, and until
                # they do, sends time out into 503s, which clients retry.
                log.warning(
                    "intake: could not check or create the topics (%d/%d): %s", attempt, attempts, exc
                )
                await asyncio.sleep(self.retry_seconds)

    async def stop(self) -> None:
        """Flush what is pending and close the producer."""
        producer, self._producer = self._producer, None
        self._connected.clear()
        if producer is not None:
            await producer.stop()

    async def write(self, records: Sequence[Record], timestamp_ms: int) -> None:
        """Produce every record and wait for all acknowledgements, at most the configured timeout."""
        producer = self._producer
        if producer is None:
            raise SinkUnavailable(f"not connected to Kafka at {self.settings.kafka_bootstrap}")
        try:
            await asyncio.wait_for(self._send_all(producer, records, timestamp_ms), self.timeout)
        except TimeoutError:
            raise SinkUnavailable(f"Kafka did not acknowledge within {self.timeout:g} s") from None
        except Exception as exc:
            raise SinkUnavailable(f"Kafka refused the records: {type(exc).__name__}: {exc}") from None

    async def _send_all(
        self, producer: AIOKafkaProducer, records: Sequence[Record], timestamp_ms: int
    ) -> None:
        # send() only queues the record (it waits when the buffer is full);
        # the futures it returns resolve on the broker's acknowledgement.
        futures = [
            await producer.send(self.topics[r.route], r.value, key=r.key, timestamp_ms=timestamp_ms)
            for r in records
        ]
        if not futures:
            return
        # asyncio.wait, not gather: a timeout must not cancel the producer's
        # own delivery futures, which it still resolves later.
        await asyncio.wait(futures)
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
