"""The view reader on the real broker: committed records only, caught up, then live updates."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.outputs import make_producer
from pipeline.rollups.partials import RollupKey
from pipeline.settings import Settings
from pipeline.topics import FACETS, ROLLUPS
from pipeline.view.reader import ViewReader, load_view
from pipeline.view.store import ViewStore
from tests.kafka_helpers import isolated_env, new_topic, settings_from
from tests.view.records import facet_record, rollup_record

pytestmark = pytest.mark.kafka

HOUR = 3_600_000
START = 1_764_338_400_000  # an hour boundary


def _rollup(start: int, country: str, values: list[float]) -> tuple[bytes, bytes]:
    record = rollup_record(
        "cart", 3600, start, {"geo.country": country}, [(v, None) for v in values], ("count",)
    )
    key = RollupKey("cart", "1h", start, (("geo.country", country),)).encode()
    return key, orjson.dumps(record)


async def _in_transaction(
    producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes, bytes | None]], commit: bool
) -> None:
    await producer.begin_transaction()
    for key, value in records:
        await producer.send_and_wait(topic, value, key=key)
    if commit:
        await producer.commit_transaction()
    else:
        await producer.abort_transaction()


async def _scenario(settings: Settings) -> None:
    rollups = await new_topic(settings, ROLLUPS, partitions=2)
    facets = await new_topic(settings, FACETS, partitions=1)
    producer = make_producer(settings, settings.topic("view-test"))
    await producer.start()
    try:
        await _in_transaction(producer, rollups, [_rollup(START, "France", [1, 2])], commit=True)
        # Results of a transaction that was aborted are no results: the reader never sees them.
        await _in_transaction(producer, rollups, [_rollup(START, "Spain", [9])], commit=False)
        facet = facet_record("geo.country", "France", 3600, START, 2)
        await _in_transaction(producer, facets, [(b"f", orjson.dumps(facet))], commit=True)

        store = ViewStore()
        progress = await load_view(settings, store, timeout=60)
        assert progress.caught_up and progress.records == 2
        groups = store.rollup_window("cart", 3600, START)
        assert list(groups) == [("France",)]  # group values in group_by order
        assert store.facet_window("geo.country", 3600, START) == {"France": (2, True)}

        # A reader kept running applies what comes after it caught up, tombstones included.
        live = ViewStore()
        reader = ViewReader(settings, live, refresh_s=0.1)
        await reader.start()
        task = asyncio.create_task(reader.run())
        try:
            await asyncio.wait_for(reader.caught_up.wait(), 60)
            assert reader.progress.lag == 0
            key, _ = _rollup(START, "France", [])
            await _in_transaction(
                producer, rollups, [_rollup(START + HOUR, "Italy", [4]), (key, None)], commit=True
            )
            while reader.progress.records < 4:
                await asyncio.sleep(0.1)
            assert live.rollup_window("cart", 3600, START) == {}
            assert list(live.rollup_window("cart", 3600, START + HOUR)) == [("Italy",)]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await reader.stop()
    finally:
        await producer.stop()


def test_committed_records_only_then_live_updates(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(settings_from(isolated_env(tmp_path))), 180))


def test_load_view_of_empty_topics_is_caught_up_at_once(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))

    async def run() -> None:
        await new_topic(settings, ROLLUPS)
        await new_topic(settings, FACETS)
        progress = await load_view(settings, ViewStore(), timeout=30)
        assert progress.caught_up and progress.records == 0 and progress.lag == 0

    asyncio.run(run())
