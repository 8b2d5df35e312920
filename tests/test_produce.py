"""Publishing raw actions: keys, JSON-lines input, and a publish run against the real broker."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import pytest

from pipeline.errors import KafkaUnavailableError, PipelineError
from pipeline.produce import (
    Message,
    ProduceSummary,
    make_producer,
    publish,
    read_lines,
    require_topic,
    session_key,
)
from pipeline.settings import Settings, load_settings
from tests.factory import encoded, raw_action
from tests.kafka_helpers import consume, isolated_env, new_topic, settings_from


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (encoded(raw_action()), b"s-1"),
        (encoded(raw_action(session={"id": "é-2"})), "é-2".encode()),
        (encoded(raw_action(session=None)), None),
        (encoded(raw_action(session={"id": 7})), None),  # not a string: no key rather than a made-up one
        (encoded(raw_action(session="s-1")), None),
        (b"{not json", None),
        (b"[1, 2]", None),
    ],
)
def test_session_key(value: bytes, key: bytes | None) -> None:
    assert session_key(value) == key


def test_lines_are_kept_byte_exact_and_blank_lines_skipped() -> None:
    first = encoded(raw_action())
    stream = io.BytesIO(first + b"\r\n\n   \n" + b'{"session":{"id":"s-9"},  "x" : 1}' + b"\n{bad")
    messages = list(read_lines(stream))
    assert messages == [
        Message(b"s-1", first),
        Message(b"s-9", b'{"session":{"id":"s-9"},  "x" : 1}'),
        Message(None, b"{bad"),  # published as is: the worker turns it into a bad row
    ]


def test_rate_of_a_summary() -> None:
    assert ProduceSummary(sent=50, seconds=2.0).rate == 25.0
    assert ProduceSummary(sent=50, seconds=0.0).rate == 0.0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_broker_is_one_clear_error() -> None:
    settings = load_settings({"RUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}"})
    with pytest.raises(KafkaUnavailableError, match=r"cannot reach Kafka at 127\.0\.0\.1:"):
        asyncio.run(publish(settings, "rum.actions.raw", []))


async def _missing(settings: Settings, topic: str) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await require_topic(producer, topic)
    finally:
        await producer.stop()


@pytest.mark.kafka
def test_a_missing_topic_is_named_at_once(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    with pytest.raises(
        PipelineError, match=r"topic t\w+\.nowhere does not exist; create the pipeline's topics"
    ):
        asyncio.run(_missing(settings, settings.topic("nowhere")))


@pytest.mark.kafka
def test_publish_sends_every_message_with_its_key_and_counts_the_malformed(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    topic = asyncio.run(new_topic(settings, "raw", partitions=3))
    messages = [Message(f"s-{i % 4}".encode(), encoded(raw_action(context={"n": i}))) for i in range(20)]
    messages.append(Message(None, b"{broken", malformed="parse"))
    progress: list[int] = []
    summary = asyncio.run(publish(settings, topic, messages, on_sent=progress.append))
    assert (summary.sent, summary.failed, dict(summary.malformed)) == (21, 0, {"parse": 1})
    assert sum(progress) == 21
    records = consume(settings, topic, 21, timeout=30)
    assert sorted((r.key or b"", r.value) for r in records) == sorted(
        (m.key or b"", m.value) for m in messages
    )
    # A session's actions share a partition, so their order is kept.
    partitions: dict[bytes | None, set[int]] = {r.key: set() for r in records}
    for record in records:
        partitions[record.key].add(record.partition)
    assert all(len(found) == 1 for key, found in partitions.items() if key is not None)
