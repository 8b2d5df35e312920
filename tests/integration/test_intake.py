"""`rum-pipeline intake` on the real broker: what it acknowledges is in Kafka, what it refuses is not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jsonschema_rs
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.badrows import original_payload
from pipeline.intake.child import running_intake
from pipeline.schemas import BAD_ROW, ENRICHED_ACTION, RAW_ACTION, SCHEMAS_DIR, validate_record
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, OTHER, RAW, topic_specs
from tests.factory import DATE, encoded, minimal_action
from tests.intake.conftest import FIXTURES, sdk_deflate
from tests.kafka_helpers import consume, isolated_env, run_worker, settings_from

pytestmark = pytest.mark.kafka

TOKEN, APPLICATION = "pub-test-1", "a1b2c3d4-0000-4000-8000-00000000c0de"
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
SDK_BATCH = (FIXTURES / "sdk-batch.ndjson").read_bytes()
#: Makes the environment of an intake for one test (see the intake_env fixture).
MakeEnv = Callable[..., dict[str, str]]


def action(n: int, session: str = "s-1") -> bytes:
    """The ``n``-th action of a session, as an SDK of application APPLICATION sends it."""
    return encoded(
        minimal_action(
            date=DATE + n,
            application={"id": APPLICATION},
            session={"id": session},
            action={"type": "custom", "target": {"name": "checkout"}},
            context={"n": n},
        )
    )


def sdk_url(base: str, token: str = TOKEN, extra: str = "") -> str:
    query = f"ddsource=browser&dd-api-key={token}&dd-evp-origin=browser&dd-request-id=r1&batch_time=1{extra}"
    return f"{base}/api/v2/rum?{query}"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


async def _post(url: str, data: bytes, headers: dict[str, str] | None = None, **kwargs: Any) -> Answer:
    connector = aiohttp.TCPConnector(**kwargs)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=data, headers={"User-Agent": UA, **(headers or {})}) as response,
    ):
        text = await response.text()
        return Answer(response.status, dict(response.headers), json.loads(text) if text else None)


def post(url: str, data: bytes, headers: dict[str, str] | None = None, **kwargs: Any) -> Answer:
    return asyncio.run(_post(url, data, headers, **kwargs))


@pytest.fixture
def intake_env(tmp_path: Path) -> Iterator[MakeEnv]:
    """Makes the environment of a test's intake; deletes the test's topics afterwards."""
    made: list[dict[str, str]] = []

    def make(**extra: str) -> dict[str, str]:
        # A generous produce timeout: the shared broker can be slow, and a request
        # answered 503 could still land later (at-least-once), breaking exact counts.
        values = {"RUM_INTAKE_CLIENT_TOKENS": f"{TOKEN}={APPLICATION}", "RUM_INTAKE_KAFKA_TIMEOUT": "60"}
        made.append(isolated_env(tmp_path, **{**values, **extra}))
        return made[-1]

    yield make
    for env in made:
        asyncio.run(_delete_topics(settings_from(env)))


async def _delete_topics(settings: Settings) -> None:
    """The broker is shared: leave no topics behind."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        names = [name for name, _ in topic_specs(settings) if name in existing]
        if names:
            await admin.delete_topics(names)
    except Exception:  # an unreachable broker has nothing of ours to delete
        pass
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def test_sdk_batch_lands_in_kafka_stamped_and_routed(tmp_path: Path, intake_env: MakeEnv) -> None:
    env = intake_env()
    settings = settings_from(env)
    with running_intake(env, tmp_path / "intake.log") as intake:
        answer = post(sdk_url(intake.url), SDK_BATCH, {"Content-Type": "text/plain;charset=UTF-8"})
        assert answer.status == 202, answer.body
        assert answer.body == {"accepted": 4, "rejected_count": 0, "rejected": []}
        raw = consume(settings, settings.topic(RAW), 1, timeout=30)
        other = consume(settings, settings.topic(OTHER), 3, timeout=30)
        intake.process.send_signal(signal.SIGTERM)
        assert intake.process.wait(30) == 0, intake.output()
    assert len(raw) == 1 and len(other) == 3
    event = orjson.loads(raw[0].value)
    assert validate_record(RAW_ACTION, event) == []
    assert event["action"]["type"] == "custom" and event["network"]["client"]["ip"] == "127.0.0.1"
    assert event["http"]["useragent"] == UA
    assert raw[0].key == event["session"]["id"].encode()
    assert raw[0].timestamp == event["intake"]["received_at"]
    others = [orjson.loads(r.value) for r in other]
    assert sorted(e["type"] for e in others) == ["action", "error", "view"]
    validator = jsonschema_rs.validator_for(json.loads((SCHEMAS_DIR / "rum-event.v1.json").read_text()))
    for record in others:
        assert list(validator.iter_errors(record)) == []
    assert "NO CLIENT TOKENS" not in intake.output()


def test_every_rejection_path_and_only_accepted_events_in_kafka(tmp_path: Path, intake_env: MakeEnv) -> None:
    env = intake_env()
    settings = settings_from(env)
    with running_intake(env, tmp_path / "intake.log") as intake:
        missing = post(f"{intake.url}/api/v2/rum?ddsource=browser", action(0))
        unknown = post(sdk_url(intake.url, token="nope"), action(0))
        assert (missing.status, unknown.status) == (403, 403)

        too_big = post(sdk_url(intake.url), b"\n".join([action(0)] * 60_000))  # ~7 MB
        assert too_big.status == 413
        bomb = zlib.compress(b"\n" * (64 * 1024 * 1024), 9)
        inflated = post(sdk_url(intake.url, extra="&dd-evp-encoding=deflate"), bomb)
        assert inflated.status == 413 and "decompressed" in inflated.body["error"]

        huge = orjson.dumps({"type": "action", "date": 1, "context": {"pad": "x" * (1024 * 1024)}})
        body = b"\n".join([action(1), b"{not json", huge, b'"text"', action(2), b"", action(3)])
        mixed = post(sdk_url(intake.url), body)
        assert mixed.status == 202
        assert mixed.body["accepted"] == 3
        assert [(r["line"], r["reason"]) for r in mixed.body["rejected"]] == [
            (2, "parse"),
            (3, "size"),
            (4, "schema"),
        ]

        all_bad = post(sdk_url(intake.url), b"{\n[")
        assert all_bad.status == 400 and all_bad.body["rejected_count"] == 2

        records = consume(settings, settings.topic(RAW), 3, timeout=30)
    assert sorted(orjson.loads(r.value)["context"]["n"] for r in records) == [1, 2, 3]
    assert consume(settings, settings.topic(OTHER), 0, timeout=2) == []


def test_broker_down_gives_503_and_acknowledges_nothing(tmp_path: Path, intake_env: MakeEnv) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = intake_env(RUM_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed}", RUM_INTAKE_KAFKA_TIMEOUT="2")
    with running_intake(env, tmp_path / "intake.log", ready=False) as intake:
        answers = [post(sdk_url(intake.url), SDK_BATCH) for _ in range(3)]
        health = asyncio.run(_get(f"{intake.url}/healthz"))
        metrics = asyncio.run(_get(f"{intake.url}/metrics"))
    assert [a.status for a in answers] == [503, 503, 503]
    assert all(a.headers["Retry-After"] == "5" for a in answers)
    assert health == (503, '{"status":"unavailable","kafka":"not connected"}')
    assert 'rum_intake_requests_total{endpoint="rum",status="503"} 3.0' in metrics[1]
    assert "rum_intake_events_accepted_total{" not in metrics[1]
    assert "Kafka at 127.0.0.1:" in intake.output()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(tmp_path: Path, intake_env: MakeEnv) -> None:
    env = intake_env(RUM_INTAKE_TRUSTED_PROXIES="127.0.0.1/32")
    settings = settings_from(env)
    xff = {"X-Forwarded-For": "6.6.6.6, 81.2.69.142"}
    with running_intake(env, tmp_path / "intake.log") as intake:
        assert post(sdk_url(intake.url), action(1, "trusted"), xff).status == 202
        # Same request from 127.0.0.2, which is not a trusted proxy: the header is ignored.
        assert (
            post(sdk_url(intake.url), action(2, "untrusted"), xff, local_addr=("127.0.0.2", 0)).status == 202
        )
        records = consume(settings, settings.topic(RAW), 2, timeout=30)
    ips = {r.key: orjson.loads(r.value)["network"]["client"]["ip"] for r in records}
    assert ips == {b"trusted": "81.2.69.142", b"untrusted": "127.0.0.2"}


def test_proxy_mode_with_a_deflate_body_reaches_the_enriched_topic(
    tmp_path: Path, intake_env: MakeEnv, test_mmdb: Path
) -> None:
    env = intake_env(RUM_GEOIP_DATABASE=str(test_mmdb), RUM_INTAKE_TRUSTED_PROXIES="127.0.0.1")
    settings = settings_from(env)
    forward = quote(
        f"/api/v2/rum?ddsource=browser&dd-api-key={TOKEN}&dd-evp-encoding=deflate&batch_time=1", safe=""
    )
    lines = [line + b"\n" for line in SDK_BATCH.splitlines()]
    with running_intake(env, tmp_path / "intake.log") as intake:
        answer = post(
            f"{intake.url}/rum-proxy?ddforward={forward}",
            sdk_deflate(lines),
            {"X-Forwarded-For": "81.2.69.142"},
        )
        assert answer.status == 202 and answer.body["accepted"] == 4, answer.body
        gzip_actions = post(
            f"{intake.url}/v1/actions",
            zlib.compress(b"[" + action(5) + b"," + action(6) + b"]"),
            {"DD-API-KEY": TOKEN, "Content-Encoding": "deflate"},
        )
        assert gzip_actions.status == 202 and gzip_actions.body["accepted"] == 2
        with run_worker(env, tmp_path / "worker.log") as worker:
            enriched = consume(settings, settings.topic(ENRICHED), 3, timeout=120)
            assert worker.process.poll() is None, worker.tail()
        bad = consume(settings, settings.topic(BAD), 0, timeout=2)
    assert bad == [] and len(enriched) == 3
    events = [orjson.loads(r.value) for r in enriched]
    assert sorted(e["context"].get("n", 0) for e in events) == [0, 5, 6]
    (event,) = [e for e in events if "_dd" in e]  # the SDK's custom action
    assert validate_record(ENRICHED_ACTION, event) == []
    assert event["geo"]["country_iso_code"] == "GB"  # the trusted X-Forwarded-For address
    assert event["browser"]["name"] == "Chrome" and event["context"]["value"] == 42.12


def test_refused_events_are_bad_rows_in_kafka_with_their_bytes(tmp_path: Path, intake_env: MakeEnv) -> None:
    env = intake_env(RUM_IP_POLICY="truncate", RUM_INTAKE_MAX_EVENT_BYTES="4096")
    settings = settings_from(env)
    other_app = orjson.dumps({"type": "action", "application": {"id": "blog"}, "date": 1})
    # The size-refused line: near the payload limit, control characters (six bytes
    # each as JSON text), so its bad row must go as base64 to fit the bad topic.
    huge = b'{"type":"action","pad":"' + b"\x01" * 5_000_000 + b'"}'
    refused = [b"{not json \xff", b'"text"', huge, other_app]
    body = b"\n".join([action(1), *refused, action(2)])
    with running_intake(env, tmp_path / "intake.log") as intake:
        answer = post(sdk_url(intake.url), body, local_addr=("127.0.0.2", 0))
        assert answer.status == 202 and answer.body["rejected_count"] == 4
        bad = consume(settings, settings.topic(BAD), 4, timeout=30)
        raw = consume(settings, settings.topic(RAW), 2, timeout=30)
    assert len(bad) == 4 and len(raw) == 2
    rows = sorted((orjson.loads(r.value) for r in bad), key=lambda row: row["source"]["intake"]["line"])
    for row, line, payload in zip(rows, [2, 3, 4, 5], refused, strict=True):
        assert validate_record(BAD_ROW, row) == []
        assert original_payload(row) == payload
        assert row["kind"] == "intake"
        intake_source = row["source"]["intake"]
        assert intake_source["line"] == line and intake_source["endpoint"] == "/api/v2/rum"
        assert (intake_source["application"], intake_source["client_ip"]) == (APPLICATION, "127.0.0.0")
    assert [row["source"]["intake"]["reason"] for row in rows] == ["parse", "schema", "size", "application"]
    assert len({r.value for r in bad}) == 4 and all(r.key is None for r in bad)


def test_stalled_uploads_do_not_keep_others_out(tmp_path: Path, intake_env: MakeEnv) -> None:
    """200 connections announce 5,162,220 bytes and send none; a normal client is still served."""
    env = intake_env(RUM_INTAKE_BODY_TIMEOUT="5")
    settings = settings_from(env)
    head = (
        f"POST /api/v2/rum?ddsource=browser&dd-api-key={TOKEN} HTTP/1.1\r\nHost: intake\r\n"
        "Content-Type: text/plain\r\nContent-Length: 5162220\r\n\r\n"
    ).encode()

    async def scenario(url: str) -> tuple[list[bytes], Answer, float]:
        host, port = url.removeprefix("http://").split(":")
        stalled = []
        for _ in range(200):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(head)
            stalled.append((reader, writer))
        await asyncio.sleep(0.5)  # they have all reached the intake
        started = time.monotonic()
        answer = await asyncio.wait_for(_post(sdk_url(url), action(7), local_addr=("127.0.0.2", 0)), 30)
        took = time.monotonic() - started
        answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in stalled)), 120)
        for _, writer in stalled:
            writer.close()
        return answers, answer, took

    with running_intake(env, tmp_path / "intake.log") as intake:
        answers, answer, took = asyncio.run(scenario(intake.url))
        records = consume(settings, settings.topic(RAW), 1, timeout=30)
        metrics = asyncio.run(_get(f"{intake.url}/metrics"))[1]
    print(f"\nthe normal client's 202 took {took:.3f} s next to 200 stalled uploads")
    assert answer.status == 202
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)  # answered, then closed (read() ended)
    assert [orjson.loads(r.value)["context"]["n"] for r in records] == [7]
    assert 'rum_intake_requests_total{endpoint="rum",status="408"} 200.0' in metrics
    assert "Traceback" not in intake.output()
