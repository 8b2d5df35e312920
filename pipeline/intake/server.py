"""The intake's HTTP application (aiohttp): endpoints, token check, limits, CORS, metrics.

Endpoints:

- ``POST /api/v2/rum``: batches of the browser SDK, newline-delimited JSON,
  possibly deflate-compressed; the client token is the ``dd-api-key`` query
  parameter.
- ``POST <any path>?ddforward=<path and query>``: the SDK's ``proxy`` option;
  ``ddforward`` carries the original ``/api/v2/rum?...`` path and query.
- ``POST /v1/actions``: one action object or a JSON array of them, for
  server-side producers; token in the ``DD-API-KEY`` header or query.
- ``GET /healthz`` and ``GET /metrics`` (Prometheus text format).

A request is answered 202 only after Kafka acknowledged every accepted event
and a bad row for every refused one (:mod:`~pipeline.intake.rejects`); see
:func:`create_app` for the other status codes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.clock import now_ms
from pipeline.enrich.ip import IpPolicySettings
from pipeline.intake.body import BodyError, content_encoding, decompress
from pipeline.intake.budget import ByteBudget, client_key
from pipeline.intake.clientip import client_ip
from pipeline.intake.cors import add_cors, origin_refused, preflight
from pipeline.intake.events import Batch, Stamps, parse_actions, parse_ndjson
from pipeline.intake.metrics import IntakeMetrics
from pipeline.intake.rejects import RequestInfo, bad_row_records
from pipeline.intake.sink import EventSink, SinkUnavailable
from pipeline.settings import Settings
from pipeline.topics import OTHER, RAW

log = logging.getLogger("rum.intake")

RUM_PATH = "/api/v2/rum"
ACTIONS_PATH = "/v1/actions"
#: Options for the aiohttp runner: bodies are decompressed by the intake
#: itself, under its size limit, never by the HTTP layer.
RUNNER_OPTIONS: dict[str, Any] = {"auto_decompress": False}
#: Status counted (never sent) when the client closed the connection before
#: its answer, as nginx logs it.
CLIENT_CLOSED = 499
#: Rejected events listed in a response; the count covers all of them.
MAX_LISTED_REJECTIONS = 100
#: Seconds a client should wait before sending again (429 and 503).
RETRY_AFTER_BUSY = 1
RETRY_AFTER_UNAVAILABLE = 5

_TOPIC_NAMES = {"raw": RAW, "other": OTHER}
_SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
_SINK: web.AppKey[Any] = web.AppKey("sink", object)
_METRICS: web.AppKey[IntakeMetrics] = web.AppKey("metrics", IntakeMetrics)


def runner_options(settings: Settings) -> dict[str, Any]:
    """Options for the aiohttp runner of an intake with these settings.

    aiohttp closes a connection that has not sent a whole request's headers
    ``keepalive_timeout`` seconds after it opened (or after its previous
    answer): that is the header timeout, and the idle keep-alive time too.
    Handlers are not cancelled when their client hangs up: a request whose
    events are on their way to Kafka finishes, and one still reading its
    body sees the hang-up and counts it.
    """
    return {
        **RUNNER_OPTIONS,
        "keepalive_timeout": settings.intake.header_timeout,
        "handler_cancellation": False,
    }


_BUDGET: web.AppKey[ByteBudget] = web.AppKey("budget", ByteBudget)


def _error(status: int, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": message}, status=status, headers=headers, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class _Refused(Exception):
    """Ends a request early with a ready response; ``close``: then close the connection."""

    def __init__(self, response: web.Response, close: bool = False) -> None:
        super().__init__(response.status)
        self.response = response
        self.close = close


class _ClientGone(Exception):
    """The client closed the connection before sending its whole body."""


def create_app(settings: Settings, sink: EventSink, metrics: IntakeMetrics | None = None) -> web.Application:
    """The intake application. Run it with :func:`runner_options` (no automatic decompression, timeouts).

    Status codes: 202 accepted (all, or some: the body lists each rejected
    event with its line and reason); 400 nothing acceptable (every event
    rejected, or a corrupt body); 403 missing or unknown client token, or a
    browser page whose Origin is not in RUM_INTAKE_CORS_ORIGINS (when that
    lists origins); 404 no such endpoint; 408 the body did not arrive within
    RUM_INTAKE_BODY_TIMEOUT (the connection is then closed); 413 payload too
    large (also once decompressed); 415 unsupported encoding; 429 the
    intake, or this client's share of it, holds too many bytes already; 503
    Kafka did not acknowledge, or is known not to answer (then at once).
    429 and 503 carry Retry-After; the SDK retries them (and 408 and 5xx),
    never other 4xx. A client that hangs up mid-body is counted under status
    499, not as an error.
    """
    metrics = metrics or IntakeMetrics()
    metrics.kafka_ready.set_function(lambda: 1.0 if sink.ready else 0.0)
    app = web.Application(middlewares=[_middleware])
    app[_SETTINGS] = settings
    app[_SINK] = sink
    app[_METRICS] = metrics
    app[_BUDGET] = ByteBudget.shared(
        settings.intake.max_in_flight_bytes,
        settings.intake.client_in_flight_share,
        settings.intake.max_payload_bytes,
    )
    app.router.add_post(RUM_PATH, _rum, name="rum")
    app.router.add_post(ACTIONS_PATH, _actions, name="actions")
    app.router.add_get("/healthz", _healthz, name="healthz")
    app.router.add_get("/metrics", _metrics, name="metrics")
    app.router.add_route("OPTIONS", "/{tail:.*}", _preflight, name="preflight")
    app.router.add_post("/{tail:.*}", _proxy, name="proxy")
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every outcome into a JSON response, adds CORS headers and counts requests."""
    close = False
    metrics = request.app[_METRICS]
    try:
        response = await handler(request)
    except _Refused as refused:
        response, close = refused.response, refused.close
    except _ClientGone:
        # Ordinary on mobile networks and page exits: counted, not an error.
        log.info("intake: client %s closed the connection mid-body on %s", request.remote, request.path)
        metrics.disconnects.inc()
        response = _error(CLIENT_CLOSED, "client closed the connection")
    except web.HTTPException as exc:
        response = _error(exc.status, exc.reason)
    except Exception:
        log.exception("intake: unexpected error on %s %s", request.method, request.path)
        response = _error(500, "internal error")
    add_cors(_origins(request), request.headers, response)
    route = request.match_info.route
    endpoint = (route.name or "unknown") if route is not None else "unknown"
    metrics.requests.labels(endpoint, str(response.status)).inc()
    if close:
        # Answer, then close: aiohttp would otherwise wait for the rest of a
        # body that is not coming before it lets the connection go.
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        if request.transport is not None:
            request.transport.close()
    return response


def _origins(request: web.Request) -> tuple[str, ...]:
    return request.app[_SETTINGS].intake.cors_origins


async def _preflight(request: web.Request) -> web.Response:
    """CORS preflight: allow POST with the headers the browser asks for."""
    return preflight(_origins(request), request.headers)


async def _healthz(request: web.Request) -> web.Response:
    """200 while Kafka answers, 503 while not (the HTTP server itself is up either way)."""
    ready = request.app[_SINK].ready
    body = {"status": "ok" if ready else "unavailable", "kafka": "connected" if ready else "not connected"}
    return web.json_response(body, status=200 if ready else 503, dumps=_dumps)


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the intake's metrics."""
    body = generate_latest(request.app[_METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _rum(request: web.Request) -> web.Response:
    """SDK batches at the Datadog intake path."""
    return await _ingest(request, request.query, ndjson=True)


async def _proxy(request: web.Request) -> web.Response:
    """The SDK's proxy mode: the original path and query travel in ``ddforward``."""
    forward = request.query.get("ddforward")
    if forward is None:
        return _error(
            404, f"no endpoint at {request.path}; post to {RUM_PATH}, {ACTIONS_PATH} or use ddforward"
        )
    target = urlsplit(forward)
    if target.path != RUM_PATH:
        return _error(404, f"ddforward path {target.path!r} is not handled; only {RUM_PATH} is")
    return await _ingest(request, dict(parse_qsl(target.query)), ndjson=True)


async def _actions(request: web.Request) -> web.Response:
    """Server-side producers: one action or a JSON array of actions."""
    return await _ingest(request, request.query, ndjson=False)


def _application(request: web.Request, params: Mapping[str, str]) -> str | None:
    """The application of the request's client token; raises _Refused 403 without a valid one."""
    tokens = request.app[_SETTINGS].intake.client_tokens
    if not tokens:
        return None  # an open intake (warned about at start)
    token = params.get("dd-api-key") or request.headers.get("DD-API-KEY")
    if not token:
        raise _Refused(_error(403, "missing client token (dd-api-key query parameter or DD-API-KEY header)"))
    application = tokens.get(token)
    if application is None:
        raise _Refused(_error(403, "unknown client token"))
    return application


def _busy() -> _Refused:
    return _Refused(_error(429, "the intake is busy; send again later", RETRY_AFTER_BUSY))


class _Hold:
    """The bytes one request holds of the budget, grown as they arrive and released at the end."""

    def __init__(self, budget: ByteBudget, client: str, metrics: IntakeMetrics) -> None:
        self.budget, self.client, self.metrics = budget, client, metrics
        self.size = 0

    def grow(self, size: int) -> None:
        """Hold ``size`` more bytes; raises _Refused 429 when they do not fit."""
        if not self.budget.try_acquire(self.client, size):
            raise _busy()
        self.size += size
        self.metrics.in_flight_bytes.inc(size)

    def release(self) -> None:
        """Give back everything held."""
        self.budget.release(self.client, self.size)
        self.metrics.in_flight_bytes.dec(self.size)
        self.size = 0


async def _read_body(request: web.Request, limit: int, hold: _Hold, timeout: float) -> bytes:
    """The whole body, held in the budget as it arrives; 413 past ``limit``, 408 after ``timeout`` s."""
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                if len(body) + len(chunk) > limit:
                    raise _Refused(_error(413, f"payload is more than {limit} bytes"))
                hold.grow(len(chunk))
                body += chunk
    except TimeoutError:
        message = f"the body did not arrive within {timeout:g} s ({len(body)} bytes came)"
        raise _Refused(_error(408, message), close=True) from None
    except ConnectionError:
        raise _ClientGone from None
    return bytes(body)


async def _ingest(request: web.Request, params: Mapping[str, str], *, ndjson: bool) -> web.Response:
    received = now_ms()
    app = request.app
    settings, sink, metrics, budget = app[_SETTINGS], app[_SINK], app[_METRICS], app[_BUDGET]
    if origin_refused(_origins(request), request.headers):
        return _error(403, f"origin {request.headers['Origin']} may not send to this intake")
    application = _application(request, params)
    limit = settings.intake.max_payload_bytes
    length = request.content_length
    if length is not None and length > limit:
        return _error(413, f"payload is {length} bytes, more than {limit}")
    try:
        encoding = content_encoding(request.headers, params)
    except BodyError as exc:
        return _error(exc.status, exc.message)
    if not sink.ready:
        return _error(503, "Kafka is not available; send again later", RETRY_AFTER_UNAVAILABLE)
    address = client_ip(
        request.remote, request.headers.getall("X-Forwarded-For", []), settings.intake.trusted_proxies
    )
    client = client_key(address)
    if length is not None and not budget.fits(client, length):
        return _busy().response  # at once, before the client sends its body
    hold = _Hold(budget, client, metrics)
    try:
        body = await _read_body(request, limit, hold, settings.intake.body_timeout)
        if encoding is not None:
            try:
                body = decompress(body, encoding, limit)
            except BodyError as exc:
                return _error(exc.status, exc.message)
            if len(body) > hold.size:
                hold.grow(len(body) - hold.size)
        stamps = Stamps(
            client_ip=address,
            user_agent=request.headers.get("User-Agent"),
            received_at=received,
            application=application,
            keep_event_ip=not ndjson,
        )
        if ndjson:
            batch = parse_ndjson(body, stamps, settings.intake.max_event_bytes)
        else:
            try:
                batch = parse_actions(body, stamps, settings.intake.max_event_bytes)
            except ValueError as exc:
                return _error(400, str(exc))
        info = RequestInfo(
            endpoint=RUM_PATH if ndjson else ACTIONS_PATH,
            request_id=uuid.uuid4().hex,
            position="line" if ndjson else "index",
            application=application,
            client_ip=address,
            received_at=received,
        )
        return await _produce(batch, info, settings, sink, metrics)
    finally:
        hold.release()


async def _produce(
    batch: Batch, info: RequestInfo, settings: Settings, sink: EventSink, metrics: IntakeMetrics
) -> web.Response:
    bad_rows = bad_row_records(batch.rejections, info, settings.section(IpPolicySettings).policy)
    if batch.records or bad_rows:
        started = time.perf_counter()
        try:
            # One write: the answer covers the accepted events and the bad rows alike.
            await sink.write(batch.records + bad_rows, info.received_at)
        except SinkUnavailable as exc:
            log.warning("intake: %s", exc)
            return _error(503, f"{exc}; send again later", RETRY_AFTER_UNAVAILABLE)
        metrics.ack_seconds.observe(time.perf_counter() - started)
        for route, count in Counter(record.route for record in batch.records).items():
            metrics.accepted.labels(_TOPIC_NAMES[route]).inc(count)
        metrics.bad_rows.inc(len(bad_rows))
    for rejection in batch.rejections:
        metrics.rejected.labels(rejection.reason).inc()
    position = info.position
    body = {
        "accepted": len(batch.records),
        "rejected_count": len(batch.rejections),
        "rejected": [
            {position: r.position, "reason": r.reason, "error": r.message}
            for r in batch.rejections[:MAX_LISTED_REJECTIONS]
        ],
    }
    status = 400 if batch.rejections and not batch.records else 202
    return web.json_response(body, status=status, dumps=_dumps)
