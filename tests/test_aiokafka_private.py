"""aiokafka's private API that pipeline.aiokafka_private relies on is still as it was.

These break on an aiokafka upgrade that renames or rewrites any of it: re-read
the new code, adapt aiokafka_private.py, then update the fingerprints and the
pin in pyproject.toml. The last tests use the real broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka import conn as aiokafka_conn
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.aiokafka_private import AIOKAFKA_VERSION, consumer_client, open_connection
from pipeline.consume import make_reader, topic_partitions
from pipeline.kafka_auth import describe_failure
from pipeline.settings import load_settings
from tests.kafka_helpers import BOOTSTRAP

ROOT = Path(__file__).resolve().parents[1]

#: sha256 (first 16 hex digits) of the source of each aiokafka function relied on.
FINGERPRINTS = {
    AIOKafkaClient.add_topic: "b054eda662913f08",
    AIOKafkaClient.force_metadata_update: "cb7befef21c8f3f9",
    # partitions_for_topic must read the very metadata that add_topic makes the client fetch.
    AIOKafkaConsumer.partitions_for_topic: "7764e983cd64f090",
    aiokafka_conn.create_conn: "673276cbddb4dc7c",
}


def test_the_pinned_aiokafka_version_is_installed() -> None:
    assert version("aiokafka") == AIOKAFKA_VERSION
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'"aiokafka=={re.escape(AIOKAFKA_VERSION)}"', pyproject)


@pytest.mark.parametrize("function", list(FINGERPRINTS), ids=lambda f: f.__qualname__)
def test_the_aiokafka_code_relied_on_is_unchanged(function: object) -> None:
    source = inspect.getsource(function)  # type: ignore[arg-type]
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == FINGERPRINTS[function]


def test_a_reader_has_its_client_where_expected() -> None:
    async def build() -> None:
        consumer = make_reader(load_settings({}))
        client = consumer_client(consumer)
        assert isinstance(client, AIOKafkaClient)
        assert consumer.partitions_for_topic("absent") is None  # not tracked yet

    asyncio.run(build())


def test_only_the_private_module_reaches_into_aiokafka() -> None:
    """No other module of the package reads a private aiokafka attribute or an undocumented module."""
    offenders = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if path.name in ("aiokafka_private.py", "faust_private.py"):  # faust's own consumer: not aiokafka's
            continue
        text = path.read_text()
        if re.search(r"\b(consumer|producer|client|admin)\._[a-z]|from aiokafka\.conn\b", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


async def _partitions_of_a_new_topic() -> list[TopicPartition]:
    settings = load_settings({"RUM_KAFKA_BOOTSTRAP": BOOTSTRAP})
    topic = f"t{uuid.uuid4().hex[:10]}.partitions"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=5, replication_factor=1)])
        consumer = make_reader(settings)
        await consumer.start()
        try:
            return await topic_partitions(consumer, topic)
        finally:
            await consumer.stop()
    finally:
        await admin.delete_topics([topic])
        await admin.close()


@pytest.mark.kafka
def test_a_reader_learns_every_partition_of_a_topic_it_never_tracked() -> None:
    parts = asyncio.run(_partitions_of_a_new_topic())
    assert [(tp.topic.rsplit(".", 1)[1], tp.partition) for tp in parts] == [
        ("partitions", p) for p in range(5)
    ]


@pytest.mark.kafka
def test_one_connection_to_the_broker_opens_and_a_reachable_broker_has_no_failure() -> None:
    async def connect() -> None:
        host, _, port = BOOTSTRAP.rpartition(":")
        conn = await open_connection(host, int(port), request_timeout_ms=5000)
        try:
            assert conn.connected()
        finally:
            conn.close()
        assert await describe_failure(load_settings({"RUM_KAFKA_BOOTSTRAP": BOOTSTRAP})) is None

    asyncio.run(connect())
