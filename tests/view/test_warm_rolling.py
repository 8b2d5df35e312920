"""Rolling ranges first: the windows a range ending now uses are built before other minutes, and
kept built as the clock moves on, so a rolling query builds none and answers do not change."""

from __future__ import annotations

import random
from typing import Any

import orjson

from pipeline.view.query import run_query
from pipeline.view.ranges import cover
from pipeline.view.request import Limits, RollupInfo, parse_query
from pipeline.view.store import ViewStore
from pipeline.view.warm import Warmer, edge_hours
from tests.view.records import CART, rollup_record

M, H, D = 60_000, 3_600_000, 86_400_000
DAY0 = 1_764_288_000_000
NOW = DAY0 + 2 * D + 10 * H + 17 * M + 30_000  # mid-minute, mid-hour
CATALOG = {"cart": RollupInfo("cart", (60, 3600, 86400), ("geo.country",), CART)}
LIMITS = Limits(retention_ms=30 * D, max_range_ms=30 * D)
COUNTRIES = ("France", "Spain", "Peru")


def windows(rng: random.Random, interval_s: int, first: int, last: int) -> list[dict[str, Any]]:
    """Records of every window of ``interval_s`` starting in ``[first, last)``, a few values each."""
    step = interval_s * 1000
    out = []
    for start in range(first - first % step, last, step):
        for country in COUNTRIES:
            count = rng.randint(1, 4)
            rows = [(round(rng.uniform(1, 300), 2), f"u{rng.randrange(50)}") for _ in range(count)]
            out.append(rollup_record("cart", interval_s, start, {"geo.country": country}, rows))
    return out


def view(seed: int, now: int) -> list[dict[str, Any]]:
    """Days and hours of the last three days; minutes of the last three hours, of the hours
    around ``now - 1d`` and of one hour in between (a minute no rolling range ends at)."""
    rng = random.Random(seed)
    hour = now - now % H
    items = windows(rng, 86400, now - 3 * D, now) + windows(rng, 3600, now - 3 * D, now)
    spans = ((hour - 2 * H, now), (hour - D - H, hour - D + 2 * H), (hour - 12 * H, hour - 11 * H))
    for first, last in spans:
        items += windows(rng, 60, first, min(last, now))
    return items


def store_of(items: list[dict[str, Any]], cache_bytes: int | None = None) -> ViewStore:
    store = ViewStore() if cache_bytes is None else ViewStore(cache_bytes=cache_bytes)
    for record in items:
        store.apply_rollup(None, orjson.dumps(record))
    return store


def rolling(store: ViewStore, now: int, last: str = "1d") -> dict[str, Any]:
    params = {"rollup": "cart", "last": last, "agg": ",".join(CART)}
    return run_query(store, parse_query(params, [], CATALOG, now, LIMITS), LIMITS)


def warm_all(warmer: Warmer) -> None:
    steps = 0
    while not warmer.step(0.001):
        steps += 1
        assert steps < 100_000


def minutes_of_rolling(now: int, span: int) -> set[tuple[str, int, int]]:
    """The 1m windows of the cover of ``[now - span, now)`` (as a query takes it)."""
    found = cover(now - span, now, (60, 3600, 86400))
    return {("cart", w.interval_s, w.start) for w in found.windows if w.interval_s == 60}


def test_edge_hours_of_the_rolling_ranges() -> None:
    hour = NOW - NOW % H
    assert edge_hours(NOW, [15 * M, H, D]) == [hour, hour - H, hour - D, hour - D + H]
    assert edge_hours(NOW, []) == []


def test_the_edges_of_a_rolling_day_are_built_before_other_minutes() -> None:
    store = store_of(view(1, NOW))
    warm_all(Warmer(store, clock=lambda: NOW))
    order = store.window_cache.held()  # no query: the order they were built in
    assert len(order) == sum(len(w) for w in store.rollups.values())
    where = {key: i for i, key in enumerate(order)}
    minutes = [key for key in order if key[1] == 60]
    assert all(where[key] < where[minutes[0]] for key in order if key[1] > 60)  # days, hours first
    # The minutes a rolling day uses now, and once its start moved into the next hour.
    edges = minutes_of_rolling(NOW, D) | minutes_of_rolling(NOW - NOW % H + H + 30 * M, D)
    edges = {key for key in edges if key in where}
    assert len(edges) > 60 and len(edges) < len(minutes)
    hour = NOW - NOW % H
    # Minutes of hours no rolling range ends or starts in (now): newer and older ones.
    others = [key for key in minutes if key[2] - key[2] % H in (hour - 2 * H, hour - 12 * H, hour - D - H)]
    assert len(others) == 3 * 60
    assert max(where[key] for key in edges) < min(where[key] for key in others)
    assert where[max(others)] < where[min(others)]  # those newest first


def test_a_rolling_day_builds_no_window_once_its_edges_are_built_also_as_the_clock_moves() -> None:
    items = view(2, NOW)
    probe = store_of(items)
    warm_all(Warmer(probe, clock=lambda: NOW))
    per_window = probe.window_cache.nbytes / len(probe.window_cache)
    # A cache bound well below every window: warming may fill three quarters of it.
    bound = int(per_window * len(probe.window_cache) * 0.6)
    clock = [NOW]
    store, fresh = store_of(items, bound), store_of(items)
    warmer = Warmer(store, clock=lambda: clock[0])
    while not warmer.rolling:
        warmer.step(0.0)
    built = store.window_cache.built
    assert rolling(store, NOW) == rolling(fresh, NOW)
    assert rolling(store, NOW, "1h") == rolling(fresh, NOW, "1h")
    assert store.window_cache.built == built  # no query built a window
    warm_all(warmer)
    assert len(store.window_cache) < sum(len(w) for w in store.rollups.values())  # not every window
    # 50 minutes on: the start of the day moved into the next hour, new minutes arrived.
    clock[0] = NOW + 50 * M
    newer = windows(random.Random(3), 60, NOW - NOW % M, clock[0])
    newer += windows(random.Random(4), 3600, NOW - NOW % H, clock[0])
    for record in newer:
        store.apply_rollup(None, orjson.dumps(record))
        fresh.apply_rollup(None, orjson.dumps(record))
    assert warmer.due()
    warm_all(warmer)
    assert not warmer.due()
    built = store.window_cache.built
    for last in ("15m", "1h", "1d"):
        assert rolling(store, clock[0], last) == rolling(fresh, clock[0], last)
    assert store.window_cache.built == built
    assert store.window_cache.nbytes <= bound


def test_without_rolling_spans_the_oldest_edge_is_left_to_the_query() -> None:
    """The same view warmed newest first only: the day's start edge is built by the query."""
    items = view(2, NOW)
    probe = store_of(items)
    warm_all(Warmer(probe, clock=lambda: NOW))
    bound = int(probe.window_cache.nbytes * 0.6)
    store, fresh = store_of(items, bound), store_of(items)
    warm_all(Warmer(store, spans_ms=(), clock=lambda: NOW))
    built = store.window_cache.built
    assert rolling(store, NOW) == rolling(fresh, NOW)
    assert store.window_cache.built > built
