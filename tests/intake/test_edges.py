"""The intake under hostile and odd clients: stalled uploads, hang-ups, foreign origins, refused events."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from pipeline.badrows import original_payload
from pipeline.intake.metrics import IntakeMetrics
from tests.intake.conftest import MemorySink, intake, intake_settings

ACTION = b'{"type":"action","date":1764340000000,"session":{"id":"s-1"},"action":{"target":{"name":"x"}}}'
RUM = "/api/v2/rum?ddsource=browser&dd-api-key=pub1"
#: The announced size of the stalled uploads seen in the wild.
STALLED_LENGTH = 5_162_220


def head(length: int, path: str = RUM) -> bytes:
    headers = f"Host: intake\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n"
    return f"POST {path} HTTP/1.1\r\n{headers}\r\n".encode()


async def connect(client: TestClient, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection that sends ``data`` and then nothing."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def post_from(client: TestClient, address: str, path: str, data: bytes) -> tuple[int, str]:
    """A POST from another loopback address: another client as far as the intake can tell."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(client.make_url(path), data=data) as response,
    ):
        return response.status, await response.text()


async def metric(client: TestClient, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_stalled_uploads_do_not_keep_other_clients_out_and_are_closed_after_the_timeouts() -> None:
    settings = intake_settings(RUM_INTAKE_BODY_TIMEOUT="3", RUM_INTAKE_HEADER_TIMEOUT="3")
    sink = MemorySink()
    async with intake(settings, sink) as client:
        stalled = [await connect(client, head(STALLED_LENGTH)) for _ in range(200)]
        half_headers = [await connect(client, head(100)[:30]) for _ in range(20)]
        status, _ = await asyncio.wait_for(post_from(client, "127.0.0.2", RUM, ACTION), 10)
        assert status == 202
        status, _ = await asyncio.wait_for(post_from(client, "127.0.0.1", RUM, ACTION), 10)
        assert status == 202  # the stalled ones hold nothing, even from the same address

        answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in stalled)), 60)
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[0]
        assert b"the body did not arrive within 3 s (0 bytes came)" in answers[0]
        # Headers never completed: closed without an answer.
        unanswered = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in half_headers)), 60)
        assert unanswered == [b""] * 20
        assert await metric(client, 'rum_intake_requests_total{endpoint="rum",status="408"}') == 200
        assert await metric(client, "rum_intake_in_flight_bytes") == 0
        for _, writer in stalled + half_headers:
            writer.close()
    assert len(sink.records) == 2


async def test_one_client_holds_only_its_share_of_the_in_flight_bytes() -> None:
    settings = intake_settings(
        RUM_INTAKE_MAX_IN_FLIGHT_BYTES="16384",
        RUM_INTAKE_MAX_PAYLOAD_BYTES="4096",
        RUM_INTAKE_MAX_EVENT_BYTES="1024",
        RUM_INTAKE_CLIENT_IN_FLIGHT_SHARE="0.5",
    )
    async with intake(settings) as client:
        # 127.0.0.1 sends most of three bodies and stalls: 7,500 of its 8,192 bytes.
        stalled = [await connect(client, head(3000) + b"x" * 2500) for _ in range(3)]
        for _ in range(500):
            if await metric(client, "rum_intake_in_flight_bytes") == 7500:
                break
            await asyncio.sleep(0.01)
        assert await metric(client, "rum_intake_in_flight_bytes") == 7500
        status, text = await post_from(client, "127.0.0.1", RUM, b"\n".join([ACTION] * 10))
        assert status == 429 and "busy" in text
        status, _ = await post_from(client, "127.0.0.2", RUM, b"\n".join([ACTION] * 10))
        assert status == 202
        for _, writer in stalled:
            writer.close()


async def test_a_client_that_hangs_up_mid_body_is_counted_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with intake() as client:
        _, writer = await connect(client, head(1000) + b'{"type":')
        writer.close()
        for _ in range(500):
            if await metric(client, "rum_intake_client_disconnects_total") == 1:
                break
            await asyncio.sleep(0.01)
        assert await metric(client, "rum_intake_client_disconnects_total") == 1
        assert await metric(client, 'rum_intake_requests_total{endpoint="rum",status="499"}') == 1
        assert await metric(client, 'rum_intake_requests_total{endpoint="rum",status="500"}') == 0
        assert await metric(client, "rum_intake_in_flight_bytes") == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("closed the connection mid-body" in r.getMessage() for r in caplog.records)


async def test_pages_of_origins_outside_the_list_cannot_write() -> None:
    settings = intake_settings(RUM_INTAKE_CORS_ORIGINS="https://shop.example")
    sink = MemorySink()
    async with intake(settings, sink) as client:
        for origin in ("https://evil.example", "null", "https://shop.example.evil.example"):
            # A text/plain post or a beacon: browsers send it without a preflight.
            refused = await client.post(
                RUM, data=ACTION, headers={"Origin": origin, "Content-Type": "text/plain"}
            )
            assert refused.status == 403, origin
            assert "may not send" in (await refused.json())["error"]
        allowed = await client.post(RUM, data=ACTION, headers={"Origin": "https://shop.example"})
        assert allowed.status == 202
        server_side = await client.post("/v1/actions", data=ACTION)  # no Origin: not a browser page
        assert server_side.status == 202
    assert len(sink.records) == 2
    sink = MemorySink()
    async with intake(sink=sink) as client:  # the default, *, lets every origin write
        assert (await client.post(RUM, data=ACTION, headers={"Origin": "https://evil.example"})).status == 202
    assert len(sink.records) == 1


async def test_refused_events_become_bad_rows_with_their_bytes_and_request() -> None:
    settings = intake_settings(
        RUM_INTAKE_CLIENT_TOKENS="pub1=shop", RUM_IP_POLICY="truncate", RUM_INTAKE_MAX_EVENT_BYTES="1000"
    )
    sink = MemorySink()
    other_app = ACTION.replace(b'"type":"action"', b'"type":"action","application":{"id":"blog"}')
    lines = [ACTION, b"{broken \xff\x01", b"[1]", ACTION[:-1] + b',"pad":"' + b"x" * 1000 + b'"}', other_app]
    async with intake(settings, sink) as client:
        response = await client.post(RUM, data=b"\n".join(lines) + b"\n")
        assert response.status == 202
        assert (await response.json())["rejected_count"] == 4
        all_refused = await client.post(RUM, data=b"[1]\n\n{")
        assert all_refused.status == 400
        actions = await client.post(
            "/v1/actions?dd-api-key=pub1", data=b'[ {"type": "view", "x": 1} ,' + ACTION + b"]"
        )
        assert actions.status == 202
    rows = sink.bad_rows
    assert [original_payload(row) for row in rows] == [*lines[1:], b"[1]", b"{", b'{"type": "view", "x": 1}']
    sources = [row["source"]["intake"] for row in rows]
    assert [(s.get("line"), s.get("index"), s["reason"]) for s in sources] == [
        (2, None, "parse"),
        (3, None, "schema"),
        (4, None, "size"),
        (5, None, "application"),
        (1, None, "schema"),
        (3, None, "parse"),
        (None, 0, "schema"),
    ]
    assert {(s["application"], s["client_ip"]) for s in sources} == {("shop", "127.0.0.0")}
    assert [s["endpoint"] for s in sources] == ["/api/v2/rum"] * 6 + ["/v1/actions"]
    assert len({s["request_id"] for s in sources}) == 3  # one per request
    assert all(row["kind"] == "intake" for row in rows)
    assert [orjson.loads(r.value)["type"] for r in sink.records] == ["action", "action"]


async def test_refused_events_are_not_acknowledged_when_their_bad_rows_cannot_be_written() -> None:
    sink = MemorySink()
    sink.fail = "Kafka did not acknowledge within 10 s"
    metrics = IntakeMetrics()
    async with intake(sink=sink, metrics=metrics) as client:
        response = await client.post(RUM, data=b"{broken")
        assert response.status == 503 and response.headers["Retry-After"] == "5"
        assert await metric(client, "rum_intake_bad_rows_total") == 0
        sink.fail = None
        assert (await client.post(RUM, data=b"{broken")).status == 400
        assert await metric(client, "rum_intake_bad_rows_total") == 1
    assert len(sink.bad_rows) == 1
