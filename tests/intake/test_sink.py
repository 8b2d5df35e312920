"""The Kafka sink on the real broker: topics created, records routed with their timestamp, errors named.

Outages (the broker stopping and coming back) are tested in tests/integration/test_intake_outage.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.intake.events import Record
from pipeline.intake.sink import KafkaSink, SinkUnavailable
from pipeline.topics import BAD, OTHER, RAW
from tests.factory import encoded, raw_action
from tests.kafka_helpers import consume, isolated_env, settings_from

STAMP = 1_764_340_000_123


def test_writing_before_connecting_is_refused(tmp_path: Path) -> None:
    sink = KafkaSink(settings_from(isolated_env(tmp_path)))
    assert not sink.ready
    with pytest.raises(SinkUnavailable, match="not connected to Kafka at "):
        asyncio.run(sink.write([Record("raw", None, b"{}")], STAMP))
    assert asyncio.run(sink.check()) is False


@pytest.mark.kafka
def test_records_reach_their_topics_with_the_request_timestamp(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path, RUM_PARTITIONS="2"))
    action = encoded(raw_action())
    records = [
        Record("raw", b"s-1", action),
        Record("other", b"s-1", b'{"type":"view"}'),
        Record("bad", None, b'{"kind":"intake"}'),
        Record("raw", None, action),
    ]

    async def run() -> bool:
        sink = KafkaSink(settings, retry_seconds=0.2)
        await sink.connect()  # creates the pipeline's topics, like a worker
        try:
            assert sink.ready
            await sink.write(records, STAMP)
            await sink.write([], STAMP)  # nothing to send is no error
            return await sink.follow()
        finally:
            await sink.stop()
            assert not sink.ready

    assert asyncio.run(asyncio.wait_for(run(), 120)) is True
    raw = consume(settings, settings.topic(RAW), 2, timeout=30)
    assert sorted((r.key or b"", r.value) for r in raw) == [(b"", action), (b"s-1", action)]
    assert {r.timestamp for r in raw} == {STAMP}
    [other] = consume(settings, settings.topic(OTHER), 1, timeout=30)
    assert (other.key, other.value, other.timestamp) == (b"s-1", b'{"type":"view"}', STAMP)
    [bad] = consume(settings, settings.topic(BAD), 1, timeout=30)
    assert bad.key is None and bad.value == b'{"kind":"intake"}'
