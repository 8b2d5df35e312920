"""The query API over a view filled in memory (the Kafka reader is tested on the real broker)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.serve.app import create_app
from pipeline.serve.service import ViewService
from pipeline.view.catalog import Catalog
from pipeline.view.request import Limits, catalog_of
from pipeline.view.store import ViewStore
from tests.view.records import facet_record, late_record, rollup_record

CONFIG = load_rollup_config(default_config_path())
CATALOG = Catalog(catalog_of(CONFIG), tuple(f.path for f in CONFIG.facets))
AGGS = tuple(a.name for a in CONFIG.rollups[0].aggregations)
H = 3_600_000


def filled_store() -> tuple[ViewStore, int]:
    """Two hours of cart values for France and Spain ending at the last whole hour, one late action."""
    store = ViewStore()
    now = int(time.time() * 1000)
    hour = now - now % H - 2 * H
    for i, (country, values) in enumerate([("France", [10.0, 30.0]), ("Spain", [5.0])]):
        for h in range(2):
            rows = [(v + h, f"u{i}{h}") for v in values]
            store.apply_rollup_record(
                rollup_record(
                    "cart_value_by_country", 3600, hour + h * H, {"geo.country": country}, rows, AGGS
                )
            )
    store.apply_rollup_record(late_record("cart_value_by_country", 3600, hour, 1))
    # The pipeline counts a facet value in its hour and in its day: a range widened to whole hours
    # may take the day's window (from 23:00 UTC on, the last day widens to the whole current day).
    day = hour - hour % (24 * H)
    for interval, start in ((3600, hour), (86400, day)):
        store.apply_facet(None, orjson.dumps(facet_record("geo.country", "France", interval, start, 7)))
        store.apply_facet(None, orjson.dumps(facet_record("geo.country", "Spain", interval, start, 3)))
    return store, hour


async def get(client: TestClient, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, params=params)
    return response.status, await response.json()


def test_query_facets_openapi_and_health() -> None:
    async def run() -> None:
        store, hour = filled_store()
        service = ViewService(store, CATALOG, Limits(), reader=None)
        async with TestClient(TestServer(create_app(service))) as client:
            status, body = await get(
                client, "/api/v1/query", rollup="cart_value_by_country", last="1d", agg="avg,count", top="1"
            )
            assert status == 200, body
            assert body["groups"] == [
                {"group": {"geo.country": "France"}, "values": {"avg": 20.5, "count": 4}}
            ]
            assert body["groups_total"] == 2 and body["late"] == 1
            assert not body["final"]  # the minutes just ended may still get actions
            status, body = await get(
                client,
                "/api/v1/query",
                rollup="cart_value_by_country",
                **{"from": str(hour), "to": str(hour + 2 * H)},
                every="1h",
                agg="sum",
                where="geo.country:Spain",
            )
            assert status == 200, body
            assert [p["groups"][0]["values"]["sum"] for p in body["series"]] == [5.0, 6.0]
            status, body = await get(client, "/api/v1/facets/geo.country", last="1d", top="1")
            assert status == 200 and body["values"] == [{"value": "France", "count": 7}]
            assert body["unique_values"] == 2
            status, doc = await get(client, "/api/v1/openapi.json")
            assert doc["openapi"] == "3.1.0" and "/api/v1/query" in doc["paths"]
            assert "at most 1440 points" in doc["info"]["description"]
            assert (await client.get("/healthz")).status == 200
            ready = await client.get("/ready")
            assert ready.status == 200 and (await ready.json())["keys"] == store.keys

    asyncio.run(run())


def test_bad_parameters_are_400_naming_them() -> None:
    cases = [
        ({"rollup": "nope"}, "rollup"),
        ({"rollup": "cart_value_by_country", "agg": "p42"}, "agg"),
        ({"rollup": "cart_value_by_country", "from": "2030-01-02", "to": "2030-01-01"}, "from"),
        ({"rollup": "cart_value_by_country", "from": "1000", "to": "2000"}, "to"),
        ({"rollup": "cart_value_by_country", "where": "geo.country:(x"}, "where"),
        ({"rollup": "cart_value_by_country", "last": "7d", "every": "1m"}, "every"),
        ({"rollup": "cart_value_by_country", "limit": "3"}, "limit"),
    ]

    async def run() -> None:
        service = ViewService(filled_store()[0], CATALOG, Limits(), reader=None)
        async with TestClient(TestServer(create_app(service))) as client:
            for params, name in cases:
                status, body = await get(client, "/api/v1/query", **params)
                assert status == 400, (params, body)
                assert body["parameter"] == name and body["error"].startswith(f"{name}: "), body
            status, body = await get(client, "/api/v1/facets/nope", last="1d")
            assert status == 400 and body["parameter"] == "path"
            response = await client.get("/api/v1/query?rollup=cart_value_by_country&last=1d&last=1h")
            assert response.status == 400 and (await response.json())["parameter"] == "last"

    asyncio.run(run())
