"""The HTTP application with the aiohttp test client and an in-memory sink."""

from __future__ import annotations

import asyncio
import zlib
from urllib.parse import quote

import orjson
from prometheus_client import CollectorRegistry

from pipeline.intake.metrics import IntakeMetrics
from tests.intake.conftest import MemorySink, intake, intake_settings, sdk_deflate

ACTION = (
    b'{"type":"action","date":1764340000000,"session":{"id":"s-1"},"action":{"target":{"name":"checkout"}}}'
)
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
SDK_QUERY = (
    "ddsource=browser&dd-api-key={token}&dd-evp-origin-version=7.16.2&dd-evp-origin=browser"
    "&dd-request-id=1f2e&batch_time=1764340000999&_dd.api=fetch"
)


def sdk_url(token: str = "pub1") -> str:
    return "/api/v2/rum?" + SDK_QUERY.format(token=token)


async def test_sdk_batch_is_accepted_stamped_and_routed(sdk_batch: bytes) -> None:
    sink = MemorySink()
    async with intake(sink=sink) as client:
        response = await client.post(
            sdk_url(), data=sdk_batch, headers={"Content-Type": "text/plain", "User-Agent": UA}
        )
        assert response.status == 202
        assert await response.json() == {"accepted": 4, "rejected_count": 0, "rejected": []}
    assert [r.route for r in sink.records] == ["other", "raw", "other", "other"]
    events = [orjson.loads(r.value) for r in sink.records]
    for event in events:
        assert event["network"]["client"]["ip"] == "127.0.0.1"
        assert event["http"]["useragent"] == UA
        assert event["intake"]["received_at"] == sink.timestamps[0]
    assert {r.key for r in sink.records} == {events[1]["session"]["id"].encode()}


async def test_nothing_is_acknowledged_when_the_sink_fails() -> None:
    sink = MemorySink()
    sink.fail = "Kafka did not acknowledge within 10 s"
    async with intake(sink=sink) as client:
        response = await client.post(sdk_url(), data=ACTION)
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert "did not acknowledge" in (await response.json())["error"]
        sink.ready, sink.fail = False, None
        response = await client.post(sdk_url(), data=ACTION)
        assert response.status == 503 and "Retry-After" in response.headers
        assert sink.writes == 1  # not even tried while not connected
        health = await client.get("/healthz")
        assert health.status == 503
        sink.ready = True
        assert (await client.get("/healthz")).status == 200
    assert sink.records == []


async def test_tokens() -> None:
    settings = intake_settings(RUM_INTAKE_CLIENT_TOKENS="pub1=shop,srv9=*")
    sink = MemorySink()
    async with intake(settings, sink) as client:
        assert (await client.post("/api/v2/rum?ddsource=browser", data=ACTION)).status == 403
        unknown = await client.post(sdk_url("nope"), data=ACTION)
        assert unknown.status == 403 and "unknown client token" in await unknown.text()
        assert (await client.post(sdk_url("pub1"), data=ACTION)).status == 202
        assert (await client.post("/v1/actions", data=ACTION, headers={"DD-API-KEY": "srv9"})).status == 202
        assert (await client.post("/v1/actions?dd-api-key=srv9", data=ACTION)).status == 202
        other_app = ACTION.replace(b'"type":"action"', b'"type":"action","application":{"id":"blog"}')
        refused = await client.post(sdk_url("pub1"), data=other_app)
        assert refused.status == 400
        assert (await refused.json())["rejected"][0]["reason"] == "application"
    assert [orjson.loads(r.value).get("application") for r in sink.records] == [{"id": "shop"}, None, None]


async def test_malformed_lines_are_listed_and_good_lines_kept() -> None:
    sink = MemorySink()
    body = b"\n".join([ACTION, b"{broken", ACTION, b"[]"])
    async with intake(sink=sink) as client:
        response = await client.post(sdk_url(), data=body)
        assert response.status == 202
        answer = await response.json()
        assert answer["accepted"] == 2 and answer["rejected_count"] == 2
        assert [(r["line"], r["reason"]) for r in answer["rejected"]] == [(2, "parse"), (4, "schema")]
        all_bad = await client.post(sdk_url(), data=b"{broken\n[]")
        assert all_bad.status == 400 and (await all_bad.json())["accepted"] == 0
    assert len(sink.records) == 2


async def test_limits() -> None:
    settings = intake_settings(RUM_INTAKE_MAX_PAYLOAD_BYTES="20000", RUM_INTAKE_MAX_EVENT_BYTES="5000")
    sink = MemorySink()
    big_event = ACTION[:-1] + b',"context":{"pad":"' + b"x" * 5000 + b'"}}'
    async with intake(settings, sink) as client:
        too_big = await client.post(sdk_url(), data=b"\n".join([ACTION] * 300))
        assert too_big.status == 413
        inflated = sdk_deflate([ACTION + b"\n"] * 300)  # small on the wire, 30 kB once inflated
        assert len(inflated) < 20000
        response = await client.post(sdk_url() + "&dd-evp-encoding=deflate", data=inflated)
        assert response.status == 413 and "decompressed" in (await response.json())["error"]

        async def chunked():  # no Content-Length: the limit applies while reading
            for _ in range(300):
                yield ACTION + b"\n"

        assert (await client.post(sdk_url(), data=chunked())).status == 413
        partial = await client.post(sdk_url(), data=big_event + b"\n" + ACTION)
        assert partial.status == 202
        assert (await partial.json())["rejected"][0] == {
            "line": 1,
            "reason": "size",
            "error": f"event is {len(big_event)} bytes; the limit is under 5000",
        }
    assert len(sink.records) == 1


async def test_deflate_bodies_as_the_sdk_sends_them_and_content_encoding() -> None:
    sink = MemorySink()
    async with intake(sink=sink) as client:
        data = sdk_deflate([ACTION + b"\n", ACTION + b"\n"])
        response = await client.post(sdk_url() + "&dd-evp-encoding=deflate", data=data)
        assert response.status == 202 and (await response.json())["accepted"] == 2
        gz = await client.post(
            "/v1/actions",
            data=zlib.compress(b"[" + ACTION + b"," + ACTION + b"]"),
            headers={"Content-Encoding": "deflate"},
        )
        assert gz.status == 202 and (await gz.json())["accepted"] == 2
        corrupt = await client.post(sdk_url() + "&dd-evp-encoding=deflate", data=b"plain text")
        assert corrupt.status == 400
        br = await client.post(sdk_url(), data=ACTION, headers={"Content-Encoding": "br"})
        assert br.status == 415
    assert len(sink.records) == 4


async def test_proxy_mode_with_ddforward() -> None:
    settings = intake_settings(RUM_INTAKE_CLIENT_TOKENS="pub1=shop")
    sink = MemorySink()
    async with intake(settings, sink) as client:
        forward = quote(sdk_url("pub1") + "&dd-evp-encoding=deflate", safe="")
        data = sdk_deflate([ACTION + b"\n"])
        response = await client.post(f"/rum-proxy?ddforward={forward}", data=data)
        assert response.status == 202, await response.text()
        bad_token = quote(sdk_url("nope"), safe="")
        assert (await client.post(f"/rum-proxy?ddforward={bad_token}", data=ACTION)).status == 403
        replay = quote("/api/v2/replay?ddsource=browser&dd-api-key=pub1", safe="")
        assert (await client.post(f"/rum-proxy?ddforward={replay}", data=ACTION)).status == 404
        assert (await client.post("/rum-proxy", data=ACTION)).status == 404
    assert len(sink.records) == 1
    assert orjson.loads(sink.records[0].value)["application"] == {"id": "shop"}


async def test_forwarded_for_is_believed_from_trusted_proxies_only() -> None:
    xff = {"X-Forwarded-For": "6.6.6.6, 81.2.69.142"}
    for trusted, expected in (("", "127.0.0.1"), ("127.0.0.0/8", "81.2.69.142")):
        sink = MemorySink()
        async with intake(intake_settings(RUM_INTAKE_TRUSTED_PROXIES=trusted), sink) as client:
            assert (await client.post(sdk_url(), data=ACTION, headers=xff)).status == 202
        assert orjson.loads(sink.records[0].value)["network"]["client"]["ip"] == expected


async def test_cors() -> None:
    origin = {"Origin": "https://shop.example"}
    async with intake() as client:
        preflight = await client.options(
            "/api/v2/rum",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert preflight.headers["Access-Control-Allow-Headers"] == "content-type"
        post = await client.post(sdk_url(), data=ACTION, headers=origin)
        assert post.headers["Access-Control-Allow-Origin"] == "*"
        refused = await client.post("/api/v2/rum", data=ACTION, headers={**origin, "Content-Encoding": "br"})
        assert refused.headers["Access-Control-Allow-Origin"] == "*"  # errors are readable too
    async with intake(intake_settings(RUM_INTAKE_CORS_ORIGINS="https://shop.example")) as client:
        allowed = await client.post(sdk_url(), data=ACTION, headers=origin)
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert allowed.headers["Vary"] == "Origin"
        other = await client.post(sdk_url(), data=ACTION, headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers


class SlowSink(MemorySink):
    """Holds every write until released, so requests stay in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = 0

    async def write(self, records, timestamp_ms):  # type: ignore[no-untyped-def]
        self.waiting += 1
        await self.release.wait()
        await super().write(records, timestamp_ms)


async def test_in_flight_bytes_are_bounded_with_429_and_released_after() -> None:
    settings = intake_settings(
        RUM_INTAKE_MAX_IN_FLIGHT_BYTES="4096",
        RUM_INTAKE_MAX_PAYLOAD_BYTES="4096",
        RUM_INTAKE_MAX_EVENT_BYTES="1024",
    )
    sink = SlowSink()
    body = b"\n".join([ACTION] * 20)  # ~2 kB: two fit, the third does not
    async with intake(settings, sink) as client:
        held = [asyncio.create_task(client.post(sdk_url(), data=body)) for _ in range(2)]
        while sink.waiting < 2:
            await asyncio.sleep(0.01)
        busy = await client.post(sdk_url(), data=body)
        assert busy.status == 429 and busy.headers["Retry-After"] == "1"
        sink.release.set()
        assert [r.status for r in await asyncio.gather(*held)] == [202, 202]
        assert (await client.post(sdk_url(), data=body)).status == 202
    assert len(sink.records) == 60


async def test_metrics() -> None:
    metrics = IntakeMetrics(CollectorRegistry())
    async with intake(metrics=metrics) as client:
        await client.post(sdk_url(), data=b"\n".join([ACTION, b"{bad", b'{"type":"view"}']))
        await client.post(sdk_url(), data=ACTION, headers={"Content-Encoding": "br"})
        text = await (await client.get("/metrics")).text()
    assert 'rum_intake_requests_total{endpoint="rum",status="202"} 1.0' in text
    assert 'rum_intake_requests_total{endpoint="rum",status="415"} 1.0' in text
    assert 'rum_intake_events_accepted_total{topic="rum.actions.raw"} 1.0' in text
    assert 'rum_intake_events_accepted_total{topic="rum.events.other"} 1.0' in text
    assert 'rum_intake_events_rejected_total{reason="parse"} 1.0' in text
    assert "rum_intake_kafka_ack_seconds_count 1.0" in text
    assert "rum_intake_in_flight_bytes 0.0" in text
    assert "rum_intake_kafka_ready 1.0" in text


async def test_unknown_paths_and_methods() -> None:
    async with intake() as client:
        # Any path takes POST (the proxy mode), so other methods are 405, with a JSON error.
        wrong = await client.get("/api/v2/rum")
        assert wrong.status == 405 and "error" in await wrong.json()
        missing = await client.post("/nothing", data=ACTION)
        assert missing.status == 404 and "ddforward" in (await missing.json())["error"]
        assert (await client.get("/healthz")).status == 200
