"""Intake tests without a broker: the aiohttp test client and a sink kept in memory.

The sink is the intake's own :class:`~pipeline.intake.sink.EventSink`
interface, not a stand-in for Kafka: how Kafka behaves is tested against the
real broker in tests/integration/test_intake.py.
"""

from __future__ import annotations

import asyncio
import inspect
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.intake.events import Record
from pipeline.intake.metrics import IntakeMetrics
from pipeline.intake.server import create_app, runner_options
from pipeline.intake.sink import SinkUnavailable
from pipeline.schemas import BAD_ROW, validate_record
from pipeline.settings import Settings, load_settings

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests of this folder on a fresh event loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


class MemorySink:
    """An EventSink that keeps what it is given; ``fail`` makes it refuse like an unreachable store.

    Events go to ``records``; bad rows, checked against their schema, to ``bad_rows``.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.bad_rows: list[dict[str, Any]] = []
        self.timestamps: list[int] = []
        self.ready = True
        self.fail: str | None = None
        self.writes = 0

    async def write(self, records: Sequence[Record], timestamp_ms: int) -> None:
        self.writes += 1
        if self.fail:
            raise SinkUnavailable(self.fail)
        for record in records:
            if record.route == "bad":
                row = orjson.loads(record.value)
                assert validate_record(BAD_ROW, row) == []
                self.bad_rows.append(row)
            else:
                self.records.append(record)
        self.timestamps.append(timestamp_ms)


def intake_settings(**env: str) -> Settings:
    """Settings from the given RUM_* values only (the test process environment is ignored)."""
    return load_settings(dict(env))


class IntakeTestServer(TestServer):
    """A test server run with the intake's own runner options, as `rum-pipeline intake` runs it.

    aiohttp's TestServer would otherwise cancel a handler when its client
    hangs up, which the intake does not do.
    """

    def __init__(self, app: web.Application, options: dict[str, Any]) -> None:
        super().__init__(app)
        self.options = options

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return web.AppRunner(self.app, **self.options)


@asynccontextmanager
async def intake(
    settings: Settings | None = None, sink: Any = None, metrics: IntakeMetrics | None = None
) -> AsyncIterator[TestClient]:
    """A running intake app on a loopback port and a client for it."""
    settings = settings or intake_settings()
    app = create_app(settings, sink if sink is not None else MemorySink(), metrics)
    server = IntakeTestServer(app, runner_options(settings))
    await server.start_server()
    async with TestClient(server) as client:
        yield client


def sdk_deflate(lines: Sequence[bytes]) -> bytes:
    """Compress like the browser SDK's worker: zlib stream, one sync flush per event, then the end."""
    compressor = zlib.compressobj(wbits=zlib.MAX_WBITS)
    chunks = [compressor.compress(line) + compressor.flush(zlib.Z_SYNC_FLUSH) for line in lines]
    return b"".join(chunks) + compressor.flush()


@pytest.fixture
def sdk_batch() -> bytes:
    """A batch as @datadog/browser-rum v7 sends it: a view, a custom action, a click and an error."""
    return (FIXTURES / "sdk-batch.ndjson").read_bytes()
