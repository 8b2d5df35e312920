"""Monitor events POSTed to webhooks, never in the way of evaluation.

:meth:`WebhookNotifier.submit` only puts the event on a queue and returns.
Each webhook URL has its own queue and worker task, so a receiver that is
down or hangs delays nobody but itself, and its events arrive in the order
they happened. An attempt is bounded by the webhook's timeout; a connection
error, a timeout, a 5xx or a 429 is retried after a doubling backoff, up to
the webhook's ``retries``; then the event is counted as failed and logged.
Another 4xx is not retried: the receiver refused the payload, and sending it
again would not change its mind.

The body is the ``monitor-event.v1`` record as JSON; the ``Idempotency-Key``
header carries the event id, so a receiver can drop the copy a retry sends
after a response that was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from pipeline import __version__
from pipeline.monitors.model import Monitor, Webhook

log = logging.getLogger(__name__)

#: Statuses worth another attempt: the receiver may answer differently later.
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class WebhookStats:
    """Counts since start, in total and per monitor for failures."""

    delivered: int = 0
    failed: int = 0
    attempts: int = 0
    retries: int = 0
    dropped: int = 0  # the URL's queue was full: the event was never attempted
    failed_by_monitor: Counter[str] = field(default_factory=Counter)


class WebhookNotifier:
    """Sends monitor events to their webhooks from background tasks; see the module docstring.

    Use inside a running event loop: ``submit`` events, ``drain`` to wait for
    the queues to empty (tests, shutdown), ``close`` to stop.
    """

    def __init__(
        self,
        *,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        queue_size: int = 1000,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.queue_size = queue_size
        self.stats = WebhookStats()
        self._session = session
        self._own_session = session is None
        self._queues: dict[str, asyncio.Queue[tuple[Webhook, dict[str, Any]]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._headers = {"Content-Type": "application/json", "User-Agent": f"rum-pipeline/{__version__}"}

    def submit(self, webhook: Webhook, event: dict[str, Any]) -> bool:
        """Queue ``event`` for ``webhook`` and return at once; False when its queue is full (dropped)."""
        queue = self._queues.get(webhook.url)
        if queue is None:
            queue = self._queues[webhook.url] = asyncio.Queue(self.queue_size)
            name = f"webhook {webhook.shown_url}"
            self._tasks[webhook.url] = asyncio.create_task(self._work(queue), name=name)
        try:
            queue.put_nowait((webhook, event))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            self.stats.failed_by_monitor[event.get("monitor", "")] += 1
            monitor = event.get("monitor")
            log.warning("webhook %s: queue full, event of %s dropped", webhook.shown_url, monitor)
            return False
        return True

    def submit_events(self, monitors: Mapping[str, Monitor], events: Iterable[dict[str, Any]]) -> int:
        """Queue each event for its monitor's webhook, if it has one; how many were queued."""
        queued = 0
        for event in events:
            monitor = monitors.get(event["monitor"])
            if monitor is not None and monitor.webhook is not None:
                queued += self.submit(monitor.webhook, event)
        return queued

    async def drain(self) -> None:
        """Wait until every queued event was delivered or counted as failed."""
        await asyncio.gather(*(queue.join() for queue in list(self._queues.values())))

    async def close(self) -> None:
        """Stop the workers (events still queued are abandoned) and close the HTTP session."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queues.clear()
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    async def _work(self, queue: asyncio.Queue[tuple[Webhook, dict[str, Any]]]) -> None:
        while True:
            webhook, event = await queue.get()
            try:
                await self._deliver(webhook, event)
            except Exception:  # a bug here must not end the worker: the next events still go
                log.exception("webhook %s: unexpected error", webhook.shown_url)
            finally:
                queue.task_done()

    async def _deliver(self, webhook: Webhook, event: dict[str, Any]) -> None:
        body = orjson.dumps(event)
        headers = {**self._headers, "Idempotency-Key": str(event.get("id", ""))}
        monitor = str(event.get("monitor", ""))
        reason = ""
        for attempt in range(webhook.retries + 1):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))
            self.stats.attempts += 1
            retry, reason = await self._attempt(webhook, body, headers)
            if not reason:
                self.stats.delivered += 1
                return
            if not retry:
                break
        self.stats.failed += 1
        self.stats.failed_by_monitor[monitor] += 1
        log.warning("webhook %s: event of %s failed after %d attempt(s): %s", webhook.shown_url, monitor,
                    attempt + 1, reason)  # fmt: skip

    async def _attempt(self, webhook: Webhook, body: bytes, headers: dict[str, str]) -> tuple[bool, str]:
        """One POST: ``(retry?, reason)``; an empty reason means delivered."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=webhook.timeout_s)
        try:
            async with self._session.post(webhook.url, data=body, headers=headers, timeout=timeout) as resp:
                await resp.read()  # the whole answer, so the connection can be reused
                if 200 <= resp.status < 300:
                    return False, ""
                return resp.status in RETRIED_STATUSES, f"HTTP {resp.status}"
        except TimeoutError:
            return True, f"no answer within {webhook.timeout_s:g}s"
        except aiohttp.ClientError as exc:
            return True, f"{type(exc).__name__}: {exc}"


async def probe_webhooks(monitors: Iterable[Monitor], timeout_s: float = 3.0) -> list[str]:
    """One line per monitor whose webhook's host cannot be connected to (TCP) within ``timeout_s``.

    What ``config check --probe-webhooks`` runs: nothing is sent, the connection
    is only opened and closed, so a receiver sees no request.
    """

    async def probe(monitor: Monitor) -> str | None:
        assert monitor.webhook is not None
        parts = urlsplit(monitor.webhook.url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except TimeoutError:
            reason = f"no connection within {timeout_s:g}s"
        except OSError as exc:
            reason = exc.strerror or str(exc)
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return None
        url = monitor.webhook.shown_url
        return f"monitor {monitor.name}: webhook.url {url!r}: cannot connect to {host}:{port} ({reason})"

    hooked = [m for m in monitors if m.webhook is not None]
    return [line for line in await asyncio.gather(*(probe(m) for m in hooked)) if line]
