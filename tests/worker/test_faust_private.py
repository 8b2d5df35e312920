"""faust-streaming's private API that pipeline.worker.faust_private relies on is still as it was.

These break on a faust upgrade that renames or rewrites any of it: re-read the
new code, adapt faust_private.py, then update the fingerprints here.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from importlib.metadata import version

import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from pipeline.app import create_app
from pipeline.settings import load_settings
from pipeline.worker.faust_private import (
    BatchDeliveryConsumer,
    ReadCommittedConsumerThread,
    committed_position,
    read_position,
)

#: sha256 (first 16 hex digits) of the source of each faust function overridden or mirrored.
FINGERPRINTS = {
    faust_consumer.Consumer._drain_messages: "44a2500309e83c63",
    faust_consumer.Consumer._add_gap: "4df2573ded7c1c2c",
    faust_consumer.Consumer.wait_empty: "e4662fe24f094819",
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer: "c2701bfc3e6f6cad",
    faust_aiokafka.Consumer._new_consumer_thread: "0870ec53dea75083",
}


def test_the_pinned_faust_version_is_installed() -> None:
    assert version("faust-streaming") == "0.15.3"


@pytest.mark.parametrize("function", list(FINGERPRINTS), ids=lambda f: f.__qualname__)
def test_overridden_faust_code_is_unchanged(function: object) -> None:
    source = inspect.getsource(function)  # type: ignore[arg-type]
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == FINGERPRINTS[function]


def test_the_private_attributes_read_exist_on_a_worker_consumer() -> None:
    app = create_app(load_settings({"RUM_METRICS_PORT": "0", "RUM_WEB_PORT": "0"}))
    consumer = app.consumer
    assert isinstance(consumer, BatchDeliveryConsumer)
    for name in ("_read_offset", "_committed_offset", "_commit_every", "_n_acked", "in_transaction"):
        assert hasattr(consumer, name), name
    assert consumer.in_transaction is False  # faust's own transactions stay off
    tp = faust_consumer.TP("t", 0)
    assert committed_position(consumer, tp) is None and read_position(consumer, tp) is None
    consumer._read_offset[tp] = 41
    assert read_position(consumer, tp) == 42


def test_the_worker_consumer_reads_committed_records_only() -> None:
    app = create_app(load_settings({"RUM_METRICS_PORT": "0", "RUM_WEB_PORT": "0"}))
    consumer = app.consumer

    async def build() -> str:
        thread = consumer._new_consumer_thread()
        assert isinstance(thread, ReadCommittedConsumerThread)
        client = thread._create_worker_consumer(app.transport)
        try:
            return client._isolation_level  # aiokafka's attribute: what its fetcher will ask for
        finally:
            await client.stop()

    assert asyncio.run(build()) == "read_committed"
    assert consumer.in_transaction is False
