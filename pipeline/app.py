"""The faust application: `create_app(settings)` and the module-level `app`.

`app` is created on first access (PEP 562), so importing this module reads no
environment variables; the faust CLI (`faust -A pipeline.app:app worker`) and
`rum-pipeline worker` both end up here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from pipeline.process import Processor, now_ms
from pipeline.settings import Settings, load_settings
from pipeline.topics import BAD, ENRICHED, RAW

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """A faust app with the enrichment agent, configured from ``settings``."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        datadir=str(settings.data_dir),
        store="rocksdb://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Raw actions up to the topic's 8 MiB limit must be readable and their
        # bad rows writable; the size limit itself is enforced by the validator.
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
        producer_acks=-1,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_host="127.0.0.1",
        consumer_auto_offset_reset="earliest",
    )
    raw = app.topic(settings.topic(RAW), key_serializer="raw", value_serializer="raw")
    enriched_topic = settings.topic(ENRICHED)
    bad_topic = settings.topic(BAD)
    processor = Processor(settings)
    app.rum_processor = processor  # type: ignore[attr-defined]

    @app.agent(raw, name="enrich")
    async def enrich(stream: Any) -> None:  # a faust.Stream; StreamT lacks take_events
        """raw -> enriched | bad row, one output per input, in batches."""
        producer = app.producer
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
            received = now_ms()
            pending = []
            for event in events:
                message = event.message
                out = processor.process(
                    message.value,
                    key=message.key,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    received_at=received,
                )
                if out.enriched:
                    # Same partition as the source: the enriched topic keeps the
                    # raw topic's partitioning, null keys included.
                    sent = await producer.send(
                        enriched_topic, message.key, out.value, message.partition, None, None
                    )
                else:
                    sent = await producer.send(bad_topic, message.key, out.value, None, None, None)
                pending.append(sent)
            # The batch is acknowledged (and its offsets become committable)
            # only after Kafka has every output: a crash replays, never loses.
            await asyncio.gather(*pending)

    return app


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    if name == "app":
        global _app
        if _app is None:
            _app = create_app(load_settings())
        return _app
    raise AttributeError(name)
