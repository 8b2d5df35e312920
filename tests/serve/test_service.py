"""The view service on the real broker: ready once caught up, unhealthy when its reader dies."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.produce import make_producer
from pipeline.serve.app import create_app
from pipeline.serve.service import ViewService
from pipeline.settings import Settings
from pipeline.topics import FACETS, ROLLUPS
from pipeline.view.catalog import Catalog, load_catalog
from pipeline.view.reader import ViewReader
from pipeline.view.request import Limits
from pipeline.view.store import ViewStore
from tests.kafka_helpers import isolated_env, new_topic, settings_from
from tests.view.records import facet_record


async def _topics(settings: Settings) -> None:
    await new_topic(settings, ROLLUPS)
    facets = await new_topic(settings, FACETS)
    producer = make_producer(settings)
    await producer.start()
    try:
        for value in ("France", "Spain"):
            record = facet_record("geo.country", value, 3600, 1_764_338_400_000, 3)
            await producer.send_and_wait(facets, orjson.dumps(record), key=value.encode())
    finally:
        await producer.stop()


async def _get(client: TestClient, path: str) -> tuple[int, Any]:
    response = await client.get(path)
    return response.status, await response.json()


async def _until_ready(client: TestClient) -> dict[str, Any]:
    while True:
        status, body = await _get(client, "/ready")
        if status == 200:
            return dict(body)
        await asyncio.sleep(0.1)


@pytest.mark.kafka
def test_ready_once_the_reader_caught_up_then_failing_when_it_dies(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))

    async def run() -> None:
        await _topics(settings)
        store = ViewStore()
        reader = ViewReader(settings, store)
        service = ViewService(store, Catalog({}, ("geo.country",)), Limits(), reader)
        async with TestClient(TestServer(create_app(service))) as client:  # starts and stops the service
            ready = await asyncio.wait_for(_until_ready(client), 60)
            warm = {"rolling_warm": ready.pop("rolling_warm"), "warm": ready.pop("warm")}
            assert ready == {"ready": True, "keys": 2, "records": 2, "lag": 0}
            assert all(isinstance(flag, bool) for flag in warm.values())  # building may not be over
            assert await _get(client, "/healthz") == (200, {"status": "ok"})
            # The reader's consumer going away ends its loop with an error: serve says so.
            await reader.stop()
            while service.failure is None:
                await asyncio.sleep(0.05)
            status, body = await _get(client, "/healthz")
            assert status == 503 and body["status"] == "failing"
            assert body["reason"].startswith("the view reader stopped: ")

    asyncio.run(asyncio.wait_for(run(), 120))


def test_a_live_service_spills_sketches_under_the_data_dir_when_bounded(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    catalog = load_catalog(settings)
    bounded = ViewService.live(settings, catalog, Limits(), sketches_in_memory=10)
    spill = bounded.store.spill
    assert spill is not None
    try:
        assert spill.capacity == 10 and spill.folder.parent == settings.worker.data_dir / "view"
        assert bounded.monitors is not None and bounded.reader is not None
        assert bounded.store.retention_ms == Limits().retention_ms
    finally:
        spill.close()
    assert ViewService.live(settings, catalog, Limits()).store.spill is None
