"""Window columns built ahead of queries: queries then build none, and answers do not change,
whatever arrives after the building (an upsert, a new window, a tombstone, retention)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.admin import create_topics
from pipeline.topics import ROLLUPS
from pipeline.view.query import run_query
from pipeline.view.reader import ViewReader
from pipeline.view.request import Limits, RollupInfo, parse_query
from pipeline.view.store import ViewStore
from pipeline.view.warm import Warmer
from tests.kafka_helpers import isolated_env, settings_from
from tests.view.records import CART, late_record, rollup_record

M, H, D = 60_000, 3_600_000, 86_400_000
DAY0 = 1_764_288_000_000
NOW = DAY0 + 2 * D
INFO = RollupInfo("cart", (60, 3600, 86400), ("geo.country",), CART)
CATALOG = {"cart": INFO}
COUNTRIES = ("France", "Spain", "Peru", "Chile")
LIMITS = Limits(retention_ms=30 * D, max_range_ms=30 * D)


def records(seed: int, hours: int = 5) -> list[dict[str, Any]]:
    """Minute and hour windows over ``hours`` hours from DAY0, a few values per group."""
    rng = random.Random(seed)
    out = []
    for interval, count in ((60, hours * 60), (3600, hours)):
        for i in range(count):
            for country in COUNTRIES:
                if rng.random() < 0.1:
                    continue
                rows = [
                    (round(rng.uniform(1, 300), 2), f"u{rng.randrange(60)}") for _ in range(rng.randint(1, 5))
                ]
                out.append(
                    rollup_record(
                        "cart", interval, DAY0 + i * interval * 1000, {"geo.country": country}, rows
                    )
                )
    out.append(late_record("cart", 3600, DAY0, 3))
    return out


def apply(store: ViewStore, items: list[dict[str, Any]]) -> None:
    for record in items:
        store.apply_rollup(None, orjson.dumps(record))


def answer(store: ViewStore, start: int, end: int) -> dict[str, Any]:
    params = {"rollup": "cart", "from": str(start), "to": str(end), "agg": ",".join(CART)}
    return run_query(store, parse_query(params, [], CATALOG, NOW, LIMITS), LIMITS)


RANGES = [(DAY0 + 7 * M, DAY0 + 4 * H + 13 * M), (DAY0 + 59 * M, DAY0 + 61 * M), (DAY0, DAY0 + 5 * H)]


def warmed(store: ViewStore) -> Warmer:
    warmer = Warmer(store)
    steps = 0
    while not warmer.step(0.001):
        steps += 1
        assert steps < 10_000
    return warmer


def assert_no_first_use(store: ViewStore, fresh: ViewStore) -> None:
    """Every query finds its windows built, and answers as a view that never warmed."""
    built = store.window_cache.built
    for start, end in RANGES:
        assert answer(store, start, end) == answer(fresh, start, end)
    assert store.window_cache.built == built  # no query built a window


def test_warming_builds_every_window_and_answers_do_not_change() -> None:
    items = records(1)
    store, fresh = ViewStore(), ViewStore()
    apply(store, items)
    apply(fresh, items)
    warmer = warmed(store)
    windows = sum(len(w) for r, w in store.rollups.items() if not r.endswith(":late"))
    assert warmer.built == windows == len(store.window_cache)
    assert store.window_cache.decoded == windows  # sketches decoded too
    assert_no_first_use(store, fresh)


def test_records_after_warming_are_built_again() -> None:
    items = records(2)
    store, fresh = ViewStore(), ViewStore()
    apply(store, items)
    apply(fresh, items)
    warmed(store)
    later = records(3, hours=6)  # every window replaced, and a sixth hour of new windows
    changed = [r for r in later if r["window_start"] in (DAY0 + 30 * M, DAY0 + H, DAY0 + 5 * H + 2 * M)]
    apply(store, changed)
    apply(fresh, changed)
    assert store.window_cache.stale  # noted for the warmer
    assert answer(store, *RANGES[0]) == answer(fresh, *RANGES[0])  # a query in between: built on use
    warmed(store)
    assert not store.window_cache.stale
    assert_no_first_use(store, fresh)
    assert answer(store, DAY0 + 5 * H, DAY0 + 5 * H + 5 * M)["groups"]  # the new window answers


def test_tombstones_after_warming() -> None:
    items = records(4)
    store, fresh = ViewStore(), ViewStore()
    apply(store, items)
    apply(fresh, items)
    warmed(store)
    for record in items[:40]:
        key = orjson.dumps({k: record[k] for k in ("rollup", "interval", "window_start", "group")})
        store.apply_rollup(key, None)
        fresh.apply_rollup(key, None)
    warmed(store)
    assert_no_first_use(store, fresh)


def test_retention_drops_warmed_windows_for_good() -> None:
    items = records(5)
    store = ViewStore(retention_ms=3 * H)
    fresh = ViewStore(retention_ms=3 * H)
    apply(store, items[:-1])
    apply(fresh, items[:-1])
    warmed(store)
    newer = [r for r in records(6, hours=7) if r["window_start"] >= DAY0 + 6 * H]
    apply(store, newer)
    apply(fresh, newer)
    assert store.evict() == fresh.evict() > 0
    gone = [("cart", 60, DAY0 + i * M) for i in range(60)]
    assert not any(store.window_cache.holds(k) or k in store.window_cache.stale for k in gone)
    warmed(store)
    assert all(len(store.rollup_window(*k)) == 0 for k in gone)
    assert_no_first_use(store, fresh)


def test_warming_stops_short_of_the_cache_bound() -> None:
    items = records(7)
    store = ViewStore(cache_bytes=400_000)
    apply(store, items)
    warmer = warmed(store)
    windows = sum(len(w) for r, w in store.rollups.items() if not r.endswith(":late"))
    assert 0 < warmer.built < windows
    assert store.window_cache.nbytes <= store.window_cache.max_bytes
    minutes = sorted(start for seconds, start in store.rollups["cart"] if seconds == 60)
    hours = [start for seconds, start in store.rollups["cart"] if seconds == 3600]
    assert all(store.window_cache.holds(("cart", 3600, start)) for start in hours)  # longest first
    assert store.window_cache.holds(("cart", 60, minutes[-1]))  # then the newest minutes
    assert not store.window_cache.holds(("cart", 60, minutes[0]))


async def _produce(bootstrap: str, topic: str, items: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for record in items:
            key = {k: record[k] for k in ("rollup", "interval", "window_start", "group")}
            await producer.send(topic, orjson.dumps(record), key=orjson.dumps(key))
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.kafka
def test_the_reader_builds_the_columns_after_catching_up_and_after_live_records(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    items, live = records(8, hours=2), records(9, hours=2)[:30]
    fresh = ViewStore()
    apply(fresh, items + live)

    async def scenario() -> None:
        await create_topics(settings)
        topic = settings.topic(ROLLUPS)
        await _produce(settings.bootstrap_servers, topic, items)
        store = ViewStore()
        reader = ViewReader(settings, store)
        await reader.start()
        task = asyncio.create_task(reader.run())
        try:
            await asyncio.wait_for(reader.caught_up.wait(), 60)
            for _ in range(600):
                if reader.progress.warm:
                    break
                await asyncio.sleep(0.05)
            assert reader.progress.warm and reader.progress.warm_at is not None
            assert len(store.window_cache) == len(store.rollups["cart"])  # every window, no late one
            await _produce(settings.bootstrap_servers, topic, live)
            for _ in range(600):
                if reader.progress.records == len(items) + len(live) and reader.progress.warm:
                    break
                await asyncio.sleep(0.05)
            assert reader.progress.warm
            assert not store.window_cache.stale
            built = store.window_cache.built
            for start, end in ((DAY0, DAY0 + 2 * H), (DAY0 + 3 * M, DAY0 + 97 * M)):
                assert answer(store, start, end) == answer(fresh, start, end)
            assert store.window_cache.built == built
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await reader.stop()

    asyncio.run(scenario())
