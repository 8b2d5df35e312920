"""GET /api/v1/monitors and /metrics over a runtime whose board is filled in memory (no broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.monitors.model import Monitor, Status
from pipeline.monitors.records import event_context, event_record, state_key, state_record
from pipeline.monitors.runtime import MonitorRuntime
from pipeline.monitors.source import ViewSource
from pipeline.query.filter import parse_filter
from pipeline.schemas import MONITOR_EVENT, validate_record
from pipeline.serve import monitors_api
from pipeline.serve.app import create_app
from pipeline.serve.service import ViewService
from pipeline.settings import load_settings
from pipeline.view.request import Limits
from pipeline.view.store import ViewStore
from tests.serve.test_api import CATALOG

T = 1_765_100_000_000


def monitors() -> list[Monitor]:
    return [
        Monitor(
            name="cart_value_high", rollup="cart_value_by_country", aggregation="avg", comparator=">",
            alert=200.0, warn=150.0, alert_recovery=180.0, window_ms=15 * 60_000, group_by=("geo.country",),
            message="too high",
        ),
        Monitor(
            name="checkouts_stopped", rollup="actions_by_name", aggregation="count", comparator="<",
            alert=1.0, window_ms=5 * 60_000, group_by=("action.target.name",),
            filter=parse_filter("@action.target.name:checkout"), multi=False,
        ),
    ]  # fmt: skip


def event(monitor: Monitor, at: int, to: Status) -> dict[str, Any]:
    context = event_context(monitor, monitor.evaluation_range(at))
    group = {"geo.country": "France"}
    return event_record("transition", monitor.name, group, at, Status.OK, to, 231.5, at, context)


def service_with_board() -> tuple[ViewService, MonitorRuntime]:
    store = ViewStore()
    service = ViewService(store, CATALOG, Limits(), reader=None)
    runtime = MonitorRuntime(load_settings({}), monitors(), ViewSource(store, CATALOG), interval_s=5.0)
    service.monitors = runtime
    board = runtime.board
    for country, status, value in (("Spain", Status.OK, 90.0), ("France", Status.ALERT, 231.5),
                                   ("Italy", Status.WARN, 160.0)):  # fmt: skip
        group = (("geo.country", country),)
        record = state_record("cart_value_high", dict(group), status, T - 10_000, value, T, T, None)
        board.apply(board.state_topic, 0, state_key("cart_value_high", group), orjson.dumps(record))
    for i in range(60):
        value = orjson.dumps(event(runtime.monitors["cart_value_high"], T - i, Status.ALERT))
        board.apply(board.events_topic, i % 3, b"cart_value_high", value)
    return service, runtime


def test_every_monitor_with_its_worst_status_and_the_latest_events() -> None:
    async def run() -> None:
        service, runtime = service_with_board()
        # create_app would start the runtime (Kafka): the routes alone are wanted here.
        app = web.Application()
        monitors_api.add_routes(app, service)
        async with TestClient(TestServer(app)) as client:
            waiting = await client.get("/api/v1/monitors")
            assert waiting.status == 503 and waiting.headers["Retry-After"] == "2"
            runtime.board.caught_up.set()
            response = await client.get("/api/v1/monitors")
            assert response.status == 200
            body = await response.json()
            metrics = await (await client.get("/metrics")).text()
        assert body["evaluated_at"] == T and body["interval_s"] == 5.0
        high, stopped = body["monitors"]
        assert high["name"] == "cart_value_high" and high["status"] == "ALERT"
        assert high["thresholds"] == {"alert": 200.0, "warn": 150.0, "alert_recovery": 180.0}
        assert (high["filter"], high["multi"], high["window"], high["message"]) == (
            None,
            True,
            "15m",
            "too high",
        )
        assert [(g["group"]["geo.country"], g["status"]) for g in high["groups"]] == [
            ("France", "ALERT"), ("Italy", "WARN"), ("Spain", "OK")
        ]  # fmt: skip
        assert high["groups"][0] == {"group": {"geo.country": "France"}, "status": "ALERT", "value": 231.5,
                                     "since": T - 10_000}  # fmt: skip
        assert stopped["status"] == "OK" and stopped["groups"] == []  # never evaluated yet
        assert stopped["filter"] == "@action.target.name:checkout" and stopped["multi"] is False
        assert stopped["thresholds"] == {"alert": 1.0} and stopped["window"] == "5m"
        # 60 events over 3 partitions: the 50 newest of all partitions, newest first.
        assert [e["at"] for e in body["events"]] == [T - i for i in range(50)]
        assert all(validate_record(MONITOR_EVENT, e) == [] for e in body["events"])
        assert "rum_monitor_cycles_total 0" in metrics and "rum_monitor_webhook_failed_total 0" in metrics

    asyncio.run(run())


def test_no_evaluation_lists_nothing_and_the_openapi_document_has_the_endpoint() -> None:
    async def run() -> None:
        service = ViewService(ViewStore(), CATALOG, Limits(), reader=None)
        async with TestClient(TestServer(create_app(service))) as client:
            body = await (await client.get("/api/v1/monitors")).json()
            doc = await (await client.get("/api/v1/openapi.json")).json()
        assert body == {"evaluated_at": None, "interval_s": 0.0, "monitors": [], "events": []}
        schema = doc["components"]["schemas"]["Monitors"]
        assert set(schema["required"]) == {"evaluated_at", "interval_s", "monitors", "events"}
        assert "/api/v1/monitors" in doc["paths"]

    asyncio.run(run())
