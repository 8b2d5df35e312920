"""Monitor tests on the real broker: topics, rollup records, a serve in this process, reading back."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from pipeline.consume import assign_topics, make_reader
from pipeline.monitors.model import Monitor
from pipeline.monitors.runtime import MonitorRuntime
from pipeline.monitors.source import ViewSource
from pipeline.monitors.webhook import WebhookNotifier
from pipeline.schemas import MONITOR_EVENT, MONITOR_STATE, validate_record
from pipeline.serve.service import ViewService
from pipeline.settings import Settings
from pipeline.topics import MONITOR_EVENTS, ROLLUPS
from pipeline.topics import MONITOR_STATE as STATE_TOPIC
from pipeline.view.catalog import Catalog
from pipeline.view.reader import ViewReader
from pipeline.view.request import Limits, RollupInfo
from pipeline.view.store import ViewStore
from tests.kafka_helpers import CLI
from tests.view.records import rollup_record

ROLLUP = "cart"
AGGS = ("count", "sum", "avg", "min", "max")


def create_topics(env: dict[str, str]) -> None:
    """Every topic of the test's prefix."""
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)


def catalog(interval_s: int) -> Catalog:
    """A catalog with one rollup ``cart`` of ``interval_s`` windows grouped by country."""
    info = RollupInfo(ROLLUP, (interval_s,), ("geo.country",), AGGS, grace_ms=0)
    return Catalog({ROLLUP: info}, ())


async def produce_values(
    settings: Settings, interval_s: int, start: int, values: dict[str, float], rollup: str = ROLLUP
) -> None:
    """One rollup record per country: a window of ``interval_s`` at ``start`` whose average is the value."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for country, value in values.items():
            group = {"geo.country": country}
            record = rollup_record(rollup, interval_s, start, group, [(value, "u1"), (value, "u2")], AGGS)
            key = {"rollup": rollup, "interval": record["interval"], "window_start": start, "group": group}
            await producer.send_and_wait(settings.topic(ROLLUPS), orjson.dumps(record), key=orjson.dumps(key))
    finally:
        await producer.stop()


async def read_topic(settings: Settings, name: str) -> list[tuple[bytes | None, dict[str, Any] | None]]:
    """Every record of a monitor topic (read_committed) to its end: (key, decoded value or None)."""
    consumer = make_reader(settings, isolation_level="read_committed", max_wait_ms=100)
    await consumer.start()
    try:
        await assign_topics(consumer, [settings.topic(name)])
        parts = list(consumer.assignment())
        ends = await consumer.end_offsets(parts)
        out: list[tuple[bytes | None, dict[str, Any] | None]] = []
        deadline = time.monotonic() + 30
        while behind := [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                where = {tp.partition: (await consumer.position(tp), ends[tp]) for tp in behind}
                raise AssertionError(f"{name} not read to its end: {where}")
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out += [(r.key, None if r.value is None else orjson.loads(r.value)) for r in records]
        return out
    finally:
        await consumer.stop()


async def events_of(settings: Settings) -> list[dict[str, Any]]:
    """Every event written, each checked against its schema, in the order of their ``at``."""
    events = [v for _, v in await read_topic(settings, MONITOR_EVENTS) if v is not None]
    for event in events:
        assert validate_record(MONITOR_EVENT, event) == [], event
    return sorted(events, key=lambda e: (e["at"], e["monitor"], orjson.dumps(e["group"])))


async def states_of(settings: Settings) -> list[dict[str, Any]]:
    """Every state record written (not tombstones), each checked against its schema."""
    states = [v for _, v in await read_topic(settings, STATE_TOPIC) if v is not None]
    for state in states:
        assert validate_record(MONITOR_STATE, state) == [], state
    return states


def moves(events: Iterable[dict[str, Any]], monitor: str, country: str | None) -> list[str]:
    """``"OK>ALERT"`` for each transition of one monitor and group (country None: the overall group)."""
    group = {} if country is None else {"geo.country": country}
    return [
        f"{e['from']}>{e['to']}"
        for e in events
        if e["kind"] == "transition" and e["monitor"] == monitor and e["group"] == group
    ]


async def until(check: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step)


@contextlib.asynccontextmanager
async def serving(
    settings: Settings,
    monitors: list[Monitor],
    interval_s: int,
    every: float = 0.3,
    notifier: WebhookNotifier | None = None,
) -> AsyncIterator[ViewService]:
    """A serve in this process: the live view of ``cart`` and the runtime evaluating ``monitors``."""
    store = ViewStore()
    cat = catalog(interval_s)
    service = ViewService(store, cat, Limits(), ViewReader(settings, store))
    service.monitors = MonitorRuntime(
        settings,
        monitors,
        ViewSource(store, cat),
        ready=lambda: service.ready,
        interval_s=every,
        notifier=notifier,
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def in_view(store: ViewStore, interval_s: int, start: int, countries: dict[str, float]) -> bool:
    """The store holds each country's window at ``start`` with its average."""
    window = store.rollup_window(ROLLUP, interval_s, start)
    for country, value in countries.items():
        entry = window.get((country,))
        if entry is None or not entry.values or entry.sum / entry.values != value:
            return False
    return True


def last_closed(interval_s: int, now_ms: int | None = None) -> int:
    """Start (ms) of the last window of ``interval_s`` that has ended."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    step = interval_s * 1000
    return now // step * step - step
