"""Monitor evaluation in a serve (in this process) on the real broker: alerts, recovery, no data, webhooks.

Rollup records are produced straight to the rollup topic; the view reads them
as in ``serve``; the runtime evaluates every 0.3 s and writes to the monitor
topics, which are read back (read_committed) and checked against the schemas.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.monitors.model import Monitor, Webhook
from pipeline.monitors.runtime import MonitorRuntime
from pipeline.monitors.webhook import WebhookNotifier
from pipeline.schemas import MONITOR_EVENT, validate_record
from pipeline.serve import monitors_api
from tests.kafka_helpers import isolated_env, settings_from
from tests.monitors.live import (
    ROLLUP,
    create_topics,
    events_of,
    in_view,
    last_closed,
    moves,
    produce_values,
    serving,
    states_of,
    until,
)

pytestmark = pytest.mark.kafka

M = 60_000


def monitor(name: str = "cart_high", **changes: Any) -> Monitor:
    """ALERT when a country's average cart value is over 100 over 5 minutes."""
    fields: dict[str, Any] = {
        "name": name,
        "rollup": ROLLUP,
        "aggregation": "avg",
        "comparator": ">",
        "alert": 100.0,
        "window_ms": 5 * M,
        "step_ms": M,
        "group_by": ("geo.country",),
        **changes,
    }
    return Monitor(**fields)


def cycle_nows(runtime: MonitorRuntime) -> dict[int, int]:
    """Cycle number (from 1) -> its ``now``, for the cycles still in ``stats.recent``."""
    recent = list(runtime.stats.recent)
    first = runtime.stats.cycles - len(recent) + 1
    return {first + i: now for i, now in enumerate(recent)}


async def test_a_crossing_alerts_once_per_group_within_two_cycles_and_recovers(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    create_topics(env)
    settings = settings_from(env)
    async with serving(settings, [monitor()], 60) as service:
        runtime = service.monitors
        assert runtime is not None
        start = last_closed(60)
        high = {"France": 150.0, "Germany": 120.0, "Italy": 50.0}
        await produce_values(settings, 60, start, high)
        await until(lambda: in_view(service.store, 60, start, high), 30, "the records in the view")
        seen = runtime.stats.cycles  # cycles finished before the view held the values
        await until(lambda: runtime.stats.cycles >= seen + 2, 30, "two cycles")
        nows = cycle_nows(runtime)
        events = await events_of(settings)
        alerts = [e for e in events if e["to"] == "ALERT"]
        assert sorted(e["group"]["geo.country"] for e in alerts) == ["France", "Germany"]
        assert all(e["at"] in (nows[seen + 1], nows[seen + 2]) for e in alerts), (alerts, nows, seen)

        # The API lists the monitor in ALERT, its worst groups first, and the events newest first.
        app = web.Application()
        monitors_api.add_routes(app, service)
        async with TestClient(TestServer(app)) as client:
            body = await until(lambda: _board(client, 2), 30, "the board to show both alerts")
        assert body["interval_s"] == pytest.approx(0.3) and body["evaluated_at"] >= alerts[-1]["at"]
        (listed,) = body["monitors"]
        assert listed["name"] == "cart_high" and listed["status"] == "ALERT"
        assert listed["thresholds"] == {"alert": 100.0} and listed["window"] == "5m"
        assert listed["filter"] is None and listed["multi"] is True
        groups = {g["group"]["geo.country"]: g for g in listed["groups"]}
        assert [g["status"] for g in listed["groups"]] == ["ALERT", "ALERT", "OK"]
        assert groups["France"]["value"] == 150.0 and groups["Italy"]["value"] == 50.0
        assert [e["at"] for e in body["events"]] == sorted((e["at"] for e in body["events"]), reverse=True)
        assert all(validate_record(MONITOR_EVENT, e) == [] for e in body["events"])

        await produce_values(settings, 60, start, {"France": 50.0})  # an upsert of France's window
        await until(lambda: _moved(settings, "France", 2), 30, "France to recover")
        done = runtime.stats.cycles
        await until(lambda: runtime.stats.cycles >= done + 3, 30, "three more cycles")
    events = await events_of(settings)
    assert moves(events, "cart_high", "France") == ["OK>ALERT", "ALERT>OK"]
    assert moves(events, "cart_high", "Germany") == ["OK>ALERT"]
    assert moves(events, "cart_high", "Italy") == []
    latest = {s["group"]["geo.country"]: s["status"] for s in await states_of(settings)}
    assert latest == {"France": "OK", "Germany": "ALERT", "Italy": "OK"}


async def _board(client: TestClient, alerts: int) -> dict[str, Any] | None:
    response = await client.get("/api/v1/monitors")
    if response.status != 200:
        return None
    body = await response.json()
    listed = [g for m in body["monitors"] for g in m["groups"] if g["status"] == "ALERT"]
    return body if len(listed) == alerts and len(body["events"]) >= alerts else None


async def _moved(settings: Any, country: str, count: int) -> bool:
    return len(moves(await events_of(settings), "cart_high", country)) >= count


async def test_stopped_data_gives_no_data_after_the_set_time(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    create_topics(env)
    settings = settings_from(env)
    ten_s = {"window_ms": 10_000, "step_ms": 10_000, "no_data_ms": 2_000}
    per_group = monitor(**ten_s)
    overall = monitor("cart_count_low", aggregation="count", comparator="<", alert=1.0, multi=False, **ten_s)
    # Values in the last window that ended and in the one now open: the monitors have data
    # from their first evaluation until the open window has been evaluated (till it is 10 s old).
    current = last_closed(10) + 10_000
    for start in (current - 10_000, current):
        await produce_values(settings, 10, start, {"France": 50.0})
    async with serving(settings, [per_group, overall], 10):
        # Nothing more comes: the window rolls past the values, and 2 s later there is no data.
        await until(lambda: _no_data(settings), 40, "NO_DATA for both monitors")
    events = await events_of(settings)
    assert moves(events, "cart_high", "France") == ["OK>NO_DATA"]
    assert moves(events, "cart_count_low", None) == ["OK>NO_DATA"]
    assert all(e["at"] >= current + 20_000 for e in events), events  # once the data left the window
    latest = {(s["monitor"], str(s["group"])): s for s in await states_of(settings)}
    assert {s["status"] for s in latest.values()} == {"NO_DATA"}
    # Not before 2 s after the last evaluation with data.
    assert all(s["since"] - s["last_data_at"] >= 2_000 for s in latest.values()), latest


async def _no_data(settings: Any) -> bool:
    events = await events_of(settings)
    return len([e for e in events if e["to"] == "NO_DATA"]) >= 2


async def test_webhooks_down_or_hanging_are_retried_counted_and_delay_no_evaluation(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    create_topics(env)
    settings = settings_from(env)
    with socket.socket() as sock:  # a port nobody listens on: the receiver is down
        sock.bind(("127.0.0.1", 0))
        down_port = sock.getsockname()[1]
    held: list[str] = []  # Idempotency-Key of every request the hanging receiver got
    active = {"now": 0}

    async def hang(request: web.Request) -> web.Response:
        held.append(request.headers["Idempotency-Key"])
        active["now"] += 1
        try:
            await asyncio.Event().wait()  # never answers; the sender's timeout ends it
        finally:
            active["now"] -= 1
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/hook", hang)
    runner = web.AppRunner(receiver, handler_cancellation=True)  # a dropped request ends its handler
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hang_port = runner.addresses[0][1]
    monitors = [
        monitor("down", webhook=Webhook(f"http://127.0.0.1:{down_port}/hook", timeout_s=2.0, retries=2)),
        monitor("hang", webhook=Webhook(f"http://127.0.0.1:{hang_port}/hook", timeout_s=2.0, retries=1)),
        monitor("plain"),
    ]
    notifier = WebhookNotifier(backoff_s=0.2)
    try:
        async with serving(settings, monitors, 60, notifier=notifier) as service:
            runtime = service.monitors
            assert runtime is not None
            start = last_closed(60)
            await produce_values(settings, 60, start, {"France": 150.0})
            await until(lambda: held, 30, "the hanging receiver to get the ALERT")
            # The receiver holds the request; evaluation goes on: the value falls, all recover.
            await produce_values(settings, 60, start, {"France": 50.0})
            await until(lambda: _moved_to(settings, "plain", "OK"), 30, "plain to recover")
            assert notifier.stats.failed_by_monitor["hang"] == 0  # its first event is still being tried
            await until(lambda: notifier.stats.failed_by_monitor["hang"] == 2, 40, "both hang events to fail")
            await until(lambda: notifier.stats.failed_by_monitor["down"] == 2, 10, "both down events to fail")
            metrics = monitors_api.metrics_text(runtime)
    finally:
        await runner.cleanup()
    events = await events_of(settings)
    for name in ("down", "hang", "plain"):
        assert moves(events, name, "France") == ["OK>ALERT", "ALERT>OK"], name
    hang_ids = [e["id"] for e in events if e["monitor"] == "hang"]
    assert held == [hang_ids[0], hang_ids[0], hang_ids[1], hang_ids[1]]  # each tried twice, in order
    assert active["now"] == 0  # every held request was ended by the sender's timeout
    assert notifier.stats.delivered == 0 and notifier.stats.failed == 4
    assert notifier.stats.attempts == 2 * 3 + 2 * 2 and notifier.stats.retries == 2 * 2 + 2 * 1
    assert 'rum_monitor_webhook_failed_by_monitor_total{monitor="hang"} 2' in metrics
    assert "rum_monitor_webhook_failed_total 4" in metrics


async def _moved_to(settings: Any, name: str, status: str) -> bool:
    return any(e["monitor"] == name and e["to"] == status for e in await events_of(settings))
