"""Window columns and their cache: the same answers as merging entry by entry, and never stale."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from pipeline.view.columns import WindowCache
from pipeline.view.fastmerge import merge_columns
from pipeline.view.merge import merge_entries
from pipeline.view.query import run_query
from pipeline.view.request import Limits, RollupInfo, parse_query
from pipeline.view.store import ViewStore, decode_record, entry_of
from tests.view.records import CART, late_record, rollup_record

M, H = 60_000, 3_600_000
DAY0 = 1_764_288_000_000
NOW = DAY0 + 2 * 86_400_000
AGGS = ("count", "sum", "avg", "min", "max", "p50", "p95", "p99", "cardinality(usr.id)")
CATALOG = {"cart": RollupInfo("cart", (60, 3600, 86400), ("geo.country",), CART)}


def values(rng: random.Random, kind: str) -> list[tuple[Any, str | None]]:
    """Measure values of one window: positive amounts, or the cases the bin array cannot hold."""
    n = rng.randint(0, 9)
    user = [f"u{rng.randrange(40)}" for _ in range(n)]
    if kind == "negative":
        nums: list[Any] = [rng.uniform(-50, 50) for _ in range(n)]
    elif kind == "wide":  # windows more than 2048 bins apart: their merge collapses, not they
        scale = rng.choice((1e-12, 1e-11, 3e12))
        nums = [scale * rng.uniform(1, 2) for _ in range(n)]
    elif kind == "zeros":
        nums = [rng.choice((0.0, 0.0, rng.uniform(1, 9))) for _ in range(n)]
    elif kind == "none":
        nums = [None] * n
    else:
        nums = [round(rng.lognormvariate(3, 1), 2) for _ in range(n)]
    return list(zip(nums, user, strict=True))


def made(seed: int, kinds: tuple[str, ...], minutes: int = 30) -> list[bytes]:
    """Encoded records of ``minutes`` 1m windows, one group per kind of values."""
    rng = random.Random(seed)
    out = []
    for minute in range(minutes):
        for country, kind in zip(("France", "Spain", "Italy", "Peru"), kinds, strict=False):
            if rng.random() < 0.15:
                continue  # a group missing from some windows
            rows = values(rng, kind)
            if rows or rng.random() < 0.5:
                record = rollup_record("cart", 60, DAY0 + minute * M, {"geo.country": country}, rows)
                out.append(orjson.dumps(record))
    return out


def filled(seed: int, kinds: tuple[str, ...], minutes: int = 30, **options: Any) -> ViewStore:
    return store_of(made(seed, kinds, minutes), **options)


def store_of(records: list[bytes], **options: Any) -> ViewStore:
    store = ViewStore(**options)
    for raw in records:
        store.apply_rollup(None, raw)
    return store


def reference(store: ViewStore, start: int, end: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Entry by entry, in window order: what queries gave before the columns."""
    per_group: dict[tuple[Any, ...], list[Any]] = {}
    for s in range(start, end, M):
        for group, entry in store.rollup_window("cart", 60, s).items():
            per_group.setdefault(group, []).append(entry)
    return {g: merge_entries(entries, AGGS, store.sketch_data) for g, entries in per_group.items()}


def merged(store: ViewStore, start: int, end: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    columns = []
    for s in range(start, end, M):
        groups = store.rollup_window("cart", 60, s)
        if groups:
            columns.append((("cart", 60, s), store.window_cache.window(("cart", 60, s), groups)))
    present = sorted({g for _, c in columns for g in c.rows})
    return merge_columns(store, columns, present, AGGS)


@pytest.mark.parametrize(
    "kinds",
    [
        ("plain", "plain", "plain", "plain"),
        ("plain", "negative", "zeros", "none"),
        ("wide", "plain", "negative", "zeros"),
    ],
)
def test_columns_give_the_answers_of_the_entry_by_entry_merge(kinds: tuple[str, ...]) -> None:
    store = filled(sum(map(len, kinds)), kinds)
    for start, end in ((DAY0, DAY0 + 30 * M), (DAY0 + 7 * M, DAY0 + 19 * M), (DAY0 + 29 * M, DAY0 + 30 * M)):
        assert merged(store, start, end) == reference(store, start, end)
        assert merged(store, start, end) == reference(store, start, end)  # from the cache


def test_an_int_min_stays_an_int_and_the_first_extreme_wins() -> None:
    store = ViewStore()
    for minute, low in enumerate((5, 5.0, 7)):
        record = rollup_record("cart", 60, DAY0 + minute * M, {"geo.country": "France"}, [(9.5, "a")])
        record["aggregations"]["min"] = low
        store.apply_rollup_record(record)
    found = merged(store, DAY0, DAY0 + 3 * M)[("France",)]
    assert found["min"] == 5 and found["min"].__class__ is int
    assert found == reference(store, DAY0, DAY0 + 3 * M)[("France",)]


def answer(store: ViewStore, start: int, end: int) -> dict[str, Any]:
    query = parse_query({"rollup": "cart", "from": str(start), "to": str(end)}, [], CATALOG, NOW, Limits())
    return run_query(store, query, Limits())


def test_an_update_of_a_cached_window_is_in_the_next_answer() -> None:
    records = made(7, ("plain",) * 3)
    store = store_of(records)
    first = answer(store, DAY0, DAY0 + 30 * M)
    built = store.window_cache.built
    assert built == 30 and len(store.window_cache) == 30
    again = answer(store, DAY0, DAY0 + 30 * M)
    assert again == first and store.window_cache.built == built  # every window from the cache
    # The window's record is replaced (a worker's newer upsert): the cached columns go.
    newer = rollup_record("cart", 60, DAY0 + 4 * M, {"geo.country": "France"}, [(1000.0, "zz")] * 3)
    store.apply_rollup(None, orjson.dumps(newer))
    assert len(store.window_cache) == 29
    updated = answer(store, DAY0, DAY0 + 30 * M)
    assert store.window_cache.built == built + 1
    assert updated == answer(store_of([*records, orjson.dumps(newer)]), DAY0, DAY0 + 30 * M)
    france = next(g["values"] for g in updated["groups"] if g["group"] == {"geo.country": "France"})
    assert france["max"] == 1000.0


def test_a_late_record_of_a_final_window_and_late_counts_reach_the_answer() -> None:
    store = filled(8, ("plain",) * 2)
    before = answer(store, DAY0, DAY0 + 10 * M)
    # A record for a window long final arrives (a replay after a crash, or a correction),
    # and late actions of another window: neither may be hidden by cached columns.
    late_group = rollup_record("cart", 60, DAY0 + 2 * M, {"geo.country": "Chile"}, [(3.0, "c")])
    store.apply_rollup_record(late_group)
    store.apply_rollup_record(late_record("cart", 60, DAY0 + 5 * M, 4))
    after = answer(store, DAY0, DAY0 + 10 * M)
    assert after["late"] == before["late"] + 4
    assert {"geo.country": "Chile"} in [g["group"] for g in after["groups"]]
    assert after["groups_total"] == before["groups_total"] + 1


def test_the_cache_stays_within_its_bound_and_answers_alike() -> None:
    records = made(9, ("plain", "negative", "plain"), minutes=60)
    unbounded, small = store_of(records), store_of(records, cache_bytes=20_000)
    for start in (DAY0, DAY0 + 13 * M, DAY0 + 40 * M):
        assert answer(small, start, start + 20 * M) == answer(unbounded, start, start + 20 * M)
        assert small.window_cache.nbytes <= 20_000 or len(small.window_cache) == 1
    assert len(small.window_cache) < len(unbounded.window_cache)


def test_retention_and_tombstones_drop_cached_windows() -> None:
    store = ViewStore(retention_ms=H)
    store.apply_rollup_record(rollup_record("cart", 60, DAY0, {"geo.country": "France"}, [(1.0, "a")]))
    store.apply_rollup_record(rollup_record("cart", 60, DAY0 + M, {"geo.country": "France"}, [(2.0, "a")]))
    answer(store, DAY0, DAY0 + 2 * M)
    assert len(store.window_cache) == 2
    key = {"rollup": "cart", "interval": "1m", "window_start": DAY0 + M, "group": {"geo.country": "France"}}
    store.apply_rollup(orjson.dumps(key), None)
    assert len(store.window_cache) == 1
    later = rollup_record("cart", 60, DAY0 + 2 * H, {"geo.country": "France"}, [(3.0, "b")])
    store.apply_rollup_record(later)
    store.evict()
    assert len(store.window_cache) == 0 and store.window_cache.nbytes == 0


def test_a_cache_bound_of_zero_keeps_only_the_window_in_use() -> None:
    cache = WindowCache(max_bytes=0)
    store = filled(10, ("plain",))
    for s in (DAY0, DAY0 + M, DAY0 + 2 * M):
        cache.window(("cart", 60, s), store.rollup_window("cart", 60, s))
    assert len(cache) == 1


def record_bytes(sketches: dict[str, Any], **aggs: Any) -> bytes:
    record = rollup_record("cart", 60, DAY0, {"geo.country": "France"}, [(2.5, "a"), (None, "b")])
    record["sketches"] = sketches
    record["aggregations"].update(aggs)
    return orjson.dumps(record)


def test_records_decoded_in_two_parts_give_the_entries_of_whole_ones() -> None:
    base = orjson.loads(record_bytes({}))
    full = rollup_record("cart", 60, DAY0, {"geo.country": "France"}, [(2.5, "a"), (None, "b"), (7.0, "c")])
    hll = full["sketches"]["hll"]["usr.id"]
    cases = [
        orjson.dumps(full),
        record_bytes({"hll": {"usr.id": hll, "count": hll, "zero_count": hll * 8}}),  # HLL attrs named so
        record_bytes({"hll": {"usr.id": hll * 12}}, sum=10.0, avg=5.0),  # long, no DDSketch
        record_bytes({**full["sketches"], "ddsketch": {**full["sketches"]["ddsketch"], "count": 2.0}}),
        record_bytes({}),
    ]
    reordered = dict(reversed(list(full["sketches"]["ddsketch"].items())))
    cases.append(record_bytes({"ddsketch": reordered, "hll": full["sketches"]["hll"]}))
    for raw in cases:
        record, entry = decode_record(raw)
        whole = orjson.loads(raw)
        assert entry == entry_of(whole, raw), raw[:200]
        assert {k: v for k, v in record.items() if k != "sketches"} == {
            k: v for k, v in whole.items() if k != "sketches"
        }
    assert base["final"] is True and base["sketches"] == {}
