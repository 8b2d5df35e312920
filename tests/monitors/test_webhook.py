"""The webhook notifier against a real local HTTP receiver: delivered, retried, bounded, counted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from pipeline.monitors.evaluate import Evaluator
from pipeline.monitors.model import Webhook
from pipeline.monitors.webhook import WebhookNotifier
from pipeline.schemas import MONITOR_EVENT, validate_record
from tests.monitors.helpers import FR, T0, Table, above


class Receiver:
    """A real aiohttp server on a loopback port that answers as each path says."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.fail_first = 0  # /flaky answers 500 this many times, then 200
        self.hanging = 0  # /hang requests still open
        self.arrived = asyncio.Event()  # set when /ok receives something
        self.hang_open_when_ok_arrived: bool | None = None
        self.port = 0

    async def _record(self, request: web.Request) -> None:
        self.requests.append((request.path, orjson.loads(await request.read()), dict(request.headers)))

    async def ok(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.hang_open_when_ok_arrived is None:
            self.hang_open_when_ok_arrived = self.hanging > 0
        self.arrived.set()
        return web.Response(status=204)

    async def flaky(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.fail_first:
            self.fail_first -= 1
            return web.Response(status=500)
        return web.Response(status=200)

    async def hang(self, request: web.Request) -> web.Response:
        await self._record(request)
        self.hanging += 1
        try:
            await asyncio.Event().wait()  # never answers; the client gives up
        finally:
            self.hanging -= 1
        raise AssertionError("unreachable")

    async def reject(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(status=400)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    for name in ("ok", "flaky", "hang", "reject"):
        app.router.add_post(f"/{name}", getattr(rec, name))
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = runner.addresses[0][1]
    try:
        yield rec
    finally:
        await runner.cleanup()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def an_event(monitor: str = "cart_high") -> dict[str, Any]:
    """A real transition event, made by the evaluator."""
    table = Table()
    table.data[monitor] = {FR: 150.0}
    (event,) = Evaluator([above(name=monitor)]).evaluate(T0, table).events
    assert validate_record(MONITOR_EVENT, event) == []
    return event


async def test_an_event_is_posted_as_json() -> None:
    async with receiver() as rec:
        notifier = WebhookNotifier()
        event = an_event()
        assert notifier.submit(Webhook(rec.url("/ok")), event) is True
        await notifier.drain()
        await notifier.close()
    ((path, body, headers),) = rec.requests
    assert (path, body) == ("/ok", event)
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == event["id"]
    assert (notifier.stats.delivered, notifier.stats.attempts, notifier.stats.failed) == (1, 1, 0)


async def test_a_receiver_answering_500_then_200_gets_the_event_again() -> None:
    async with receiver() as rec:
        rec.fail_first = 2
        notifier = WebhookNotifier(backoff_s=0.01)
        event = an_event()
        notifier.submit(Webhook(rec.url("/flaky"), retries=3), event)
        await notifier.drain()
        await notifier.close()
    assert rec.paths() == ["/flaky"] * 3
    assert {h["Idempotency-Key"] for _, _, h in rec.requests} == {event["id"]}
    stats = notifier.stats
    assert (stats.delivered, stats.failed, stats.attempts, stats.retries) == (1, 0, 3, 2)


async def test_a_receiver_that_is_down_is_retried_then_counted_as_failed() -> None:
    notifier = WebhookNotifier(backoff_s=0.01)
    notifier.submit(Webhook(f"http://127.0.0.1:{free_port()}/x", timeout_s=2, retries=2), an_event())
    await notifier.drain()
    await notifier.close()
    stats = notifier.stats
    assert (stats.delivered, stats.failed, stats.attempts, stats.retries) == (0, 1, 3, 2)
    assert stats.failed_by_monitor == {"cart_high": 1}


async def test_a_hanging_receiver_is_bounded_by_the_timeout() -> None:
    async with receiver() as rec:
        notifier = WebhookNotifier(backoff_s=0.01)
        notifier.submit(Webhook(rec.url("/hang"), timeout_s=0.5, retries=1), an_event())
        await notifier.drain()  # returns: each attempt ends at the timeout
        await notifier.close()
    assert rec.paths() == ["/hang", "/hang"]
    assert (notifier.stats.failed, notifier.stats.attempts) == (1, 2)


async def test_a_hanging_receiver_delays_no_other_webhook() -> None:
    async with receiver() as rec:
        notifier = WebhookNotifier()
        notifier.submit(Webhook(rec.url("/hang"), timeout_s=30, retries=0), an_event("slow"))
        notifier.submit(Webhook(rec.url("/ok")), an_event("fast"))
        await rec.arrived.wait()
        await notifier.close()  # abandons the hanging attempt
    # When the other monitor's event arrived, the hanging request was still open.
    assert rec.hang_open_when_ok_arrived is True
    assert [body["monitor"] for path, body, _ in rec.requests if path == "/ok"] == ["fast"]


async def test_a_refused_payload_is_not_retried() -> None:
    async with receiver() as rec:
        notifier = WebhookNotifier(backoff_s=0.01)
        notifier.submit(Webhook(rec.url("/reject"), retries=3), an_event())
        await notifier.drain()
        await notifier.close()
    assert rec.paths() == ["/reject"]
    assert (notifier.stats.failed, notifier.stats.attempts) == (1, 1)


async def test_submit_returns_at_once_and_drops_beyond_the_queue() -> None:
    notifier = WebhookNotifier(queue_size=1)
    hook = Webhook(f"http://127.0.0.1:{free_port()}/x", retries=0)
    # No await between the submits: the worker has not run, so the queue holds one event.
    assert [notifier.submit(hook, an_event()) for _ in range(3)] == [True, False, False]
    assert notifier.stats.dropped == 2
    await notifier.drain()
    await notifier.close()
    assert (notifier.stats.failed, notifier.stats.attempts) == (1, 1)


async def test_events_go_to_the_webhook_of_their_monitor() -> None:
    async with receiver() as rec:
        hooked = above(name="hooked", webhook=Webhook(rec.url("/ok")))
        silent = above(name="silent")
        table = Table()
        table.data = {"hooked": {FR: 150.0}, "silent": {FR: 150.0}}
        result = Evaluator([hooked, silent]).evaluate(T0, table)
        notifier = WebhookNotifier()
        assert notifier.submit_events({"hooked": hooked, "silent": silent}, result.events) == 1
        await notifier.drain()
        await notifier.close()
    assert [body for _, body, _ in rec.requests] == [e for e in result.events if e["monitor"] == "hooked"]
