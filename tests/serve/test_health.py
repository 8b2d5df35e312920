"""/healthz and /ready: the process works, and whether answers are complete yet."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.serve import health
from pipeline.serve.service import ViewService
from pipeline.settings import load_settings
from pipeline.view.catalog import Catalog
from pipeline.view.reader import ViewReader
from pipeline.view.request import Limits
from pipeline.view.store import ViewStore
from tests.view.records import facet_record


def _answers(service: ViewService) -> dict[str, tuple[int, Any]]:
    """The status and body of /healthz and /ready (only the health routes: no reader is started)."""

    async def run() -> dict[str, tuple[int, Any]]:
        app = web.Application()
        health.add_routes(app, service)
        async with TestClient(TestServer(app)) as client:
            found = {}
            for path in ("/healthz", "/ready"):
                response = await client.get(path)
                found[path] = (response.status, await response.json())
            return found

    return asyncio.run(run())


def _service(reader: ViewReader | None = None) -> ViewService:
    store = ViewStore()
    store.apply_facet(None, orjson.dumps(facet_record("geo.country", "France", 3600, 0, 1)))
    return ViewService(store, Catalog({}, ()), Limits(), reader)


def test_without_a_reader_the_view_is_ready() -> None:
    assert _answers(_service()) == {
        "/healthz": (200, {"status": "ok"}),
        "/ready": (200, {"ready": True, "keys": 1}),
    }


def test_a_reader_still_reading_is_not_ready_and_says_how_far_it_is() -> None:
    store = ViewStore()
    reader = ViewReader(load_settings({}), store)  # never started: nothing read yet
    reader.progress.records, reader.progress.lag = 10, 5
    answers = _answers(ViewService(store, Catalog({}, ()), Limits(), reader))
    assert answers["/healthz"] == (200, {"status": "ok"})  # not ready is not unhealthy
    assert answers["/ready"] == (
        503,
        {"ready": False, "keys": 0, "records": 10, "lag": 5, "rolling_warm": False, "warm": False},
    )
    reader.progress.caught_up = True
    status, body = _answers(ViewService(store, Catalog({}, ()), Limits(), reader))["/ready"]
    assert (status, body["warm"], body["rolling_warm"]) == (200, False, False)  # ready before warm
    reader.progress.rolling_at = 1.0
    status, body = _answers(ViewService(store, Catalog({}, ()), Limits(), reader))["/ready"]
    assert (status, body["warm"], body["rolling_warm"]) == (200, False, True)


def test_a_stopped_reader_makes_the_process_unhealthy_with_the_reason() -> None:
    service = _service()
    service.failure = "the view reader stopped: KafkaError()"
    assert _answers(service)["/healthz"] == (503, {"status": "failing", "reason": service.failure})
