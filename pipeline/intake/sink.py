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

from pipeline.aiokafka_private import track_topic, update_metadata
from pipeline.errors import PipelineError
from pipeline.intake.events import Record, Route
from pipeline.settings import Settings
from pipeline.topics import BAD, OTHER, RAW

log = logging.getLogger("rum.intake")


class SinkUnavailable(PipelineError):
    """The sink did not acknowledge every record in time: the client must send them again."""


class EventSink(Protocol):
    """Durable destination of accepted records."""

    @property
    def ready(self) -> bool:
        """True when the sink can take records now (False: requests are answered 503 at once)."""
        ...

    async def write(self, records: Sequence[Record], timestamp_ms: int) -> None:
        """Return once every record is durably stored; raise SinkUnavailable otherwise."""
        ...


class KafkaSink:
    """Produces records to the raw, other-events and bad topics and waits for every acknowledgement.

    The producer is idempotent with acks from all in-sync replicas, so an
    acknowledged record survives a broker failure and a retried send does not
    duplicate it. :meth:`run` connects in the background and keeps trying, so
    the intake serves (with 503s) while Kafka is down; once connected, it asks
    the cluster for its topics' metadata every ``intake_kafka_check_interval`` seconds
    and is not ready while that fails, so requests get their 503 at once
    instead of after the produce timeout, and /healthz follows the cluster.
    """

    def __init__(self, settings: Settings, retry_seconds: float = 1.0) -> None:
        self.settings = settings
        self.topics: dict[Route, str] = {
            "raw": settings.topic(RAW),
            "other": settings.topic(OTHER),
            "bad": settings.topic(BAD),
        }
        self.timeout = settings.intake.kafka_timeout
        self.retry_seconds = retry_seconds
        self.check_interval = settings.intake.kafka_check_interval
        # A check that gets no answer in this time counts as a failure; a
        # loaded but healthy cluster answers metadata requests in milliseconds.
        self.check_timeout = max(2.0, 2 * self.check_interval)
        self._producer: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()
        self._down = asyncio.Event()

    @property
    def ready(self) -> bool:
        """True while the producer is connected and the cluster answered the last check."""
        return self._connected.is_set() and not self._down.is_set()

    async def run(self) -> None:
        """Connect, create missing topics, then check the cluster (until cancelled)."""
        await self.connect()
        await self.watch()

    async def connect(self) -> None:
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
                        self.settings.kafka.bootstrap,
                        exc,
                    )
                    warned = True
            await asyncio.sleep(self.retry_seconds)
        self._producer = producer
        await self._create_topics()
        # The checks refresh the metadata of these topics only (the producer
        # tracks the topics it sends to): all of a large cluster's would cost
        # tens of milliseconds of parsing per check.
        for topic in self.topics.values():
            track_topic(producer.client, topic)
        self._connected.set()
        log.info("intake: connected to Kafka at %s", self.settings.kafka.bootstrap)

    async def check(self) -> bool:
        """True when the cluster answers a metadata request within the check timeout."""
        producer = self._producer
        if producer is None:
            return False
        try:
            # The producer's own client and connections, the ones a send would use;
            # the result is False when no broker answered.
            return await asyncio.wait_for(update_metadata(producer.client), self.check_timeout)
        except Exception:
            return False

    async def watch(self) -> None:
        """Check the cluster every ``check_interval`` seconds and follow it (until cancelled)."""
        while True:
            await asyncio.sleep(self.check_interval)
            await self.follow()

    async def follow(self) -> bool:
        """Check the cluster once and turn ready or not accordingly; True when it answered."""
        answered = await self.check()
        if answered and self._down.is_set():
            self._down.clear()
            log.warning("intake: Kafka at %s answers again", self.settings.kafka.bootstrap)
        elif not answered and not self._down.is_set():
            self._down.set()
            log.warning(
                "intake: Kafka at %s does not answer; answering 503 until it does",
                self.settings.kafka.bootstrap,
            )
        return answered

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
            raise SinkUnavailable(f"not connected to Kafka at {self.settings.kafka.bootstrap}")
        if self._down.is_set():
            raise SinkUnavailable(f"Kafka at {self.settings.kafka.bootstrap} does not answer")
        sending = asyncio.ensure_future(self._send_all(producer, records, timestamp_ms))
        went_down = asyncio.ensure_future(self._down.wait())
        try:
            # A write waits for its acknowledgements, the timeout, or the
            # check finding the cluster gone, whichever comes first.
            await asyncio.wait(
                {sending, went_down}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            went_down.cancel()
            finished = sending.done()
            if not finished:
                sending.cancel()  # the producer still delivers what it queued; the client sends again
        if not finished:
            if self._down.is_set():
                raise SinkUnavailable(f"Kafka at {self.settings.kafka.bootstrap} stopped answering")
            raise SinkUnavailable(f"Kafka did not acknowledge within {self.timeout:g} s")
        error = sending.exception()
        if error is not None:
            raise SinkUnavailable(f"Kafka refused the records: {type(error).__name__}: {error}")

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
