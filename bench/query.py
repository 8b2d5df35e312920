"""The rollup view and its queries: catch-up rate, memory per key, rolling-1d query latency.

1. Publishes ``--records`` (default 1,000,000) measure-rollup records to a
   fresh, prefixed rollup topic: ``cart_value_by_country`` records (every
   aggregation, a DDSketch and an HLL) for ``--groups`` countries over 1m, 1h
   and 1d windows, and count-only ``actions_by_name`` records for the rest.
2. Catch-up: a :class:`~pipeline.view.reader.ViewReader` reads them from the
   beginning (read_committed) until caught up: records/s.
   Right after it reports caught up, rolling-1d queries (every aggregation) are
   issued one after the other while the reader builds window columns in the
   background, as ``serve`` does; then the time until every window is built
   (see ``catch_up``).
3. Memory per key: ``tracemalloc`` over a store filled with a sample of each
   kind of record (the store's own allocations, per key kept).
4. Query latency: rolling-1d queries at random minutes over the filled view,
   every group (``--groups``), with and without percentiles and unique counts:
   once with no window built (as a one-shot ``rum-pipeline query``, which builds
   the windows it uses), once again with them built (see ``latency``).

    python bench/query.py [--records 1000000] [--groups 250] [--queries 200] [--json FILE]

No figure here is asserted by a test; they are printed, and written to --json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.admin import create_topics  # noqa: E402
from pipeline.clock import now_ms  # noqa: E402
from pipeline.kafka_auth import client_kwargs  # noqa: E402
from pipeline.rollups.aggregation_set import AggregationSet  # noqa: E402
from pipeline.rollups.config import default_config_path, load_rollup_config  # noqa: E402
from pipeline.rollups.windows import format_interval  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402
from pipeline.topics import ROLLUPS  # noqa: E402
from pipeline.view.query import run_query  # noqa: E402
from pipeline.view.reader import WARM_SLICE_S, ViewReader  # noqa: E402
from pipeline.view.request import Limits, catalog_of, parse_query  # noqa: E402
from pipeline.view.spill import SketchSpill  # noqa: E402
from pipeline.view.store import ViewStore  # noqa: E402
from pipeline.view.warm import ROLLING_SPANS_MS, Warmer  # noqa: E402

M, H, D = 60_000, 3_600_000, 86_400_000
CONFIG = load_rollup_config(default_config_path())
CART = CONFIG.rollups[0]
NAMES = CONFIG.rollups[1]


def templates(spec: Any, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` distinct (aggregations, sketches) bodies of a rollup, over 1-12 actions each."""
    aggs = AggregationSet.of(tuple(a.name for a in spec.aggregations))
    out = []
    for _ in range(count):
        state = aggs.initialize()
        for _ in range(rng.randint(1, 12)):
            aggs.add(
                state, round(rng.lognormvariate(3.5, 0.8), 2), {"usr": {"id": f"u{rng.randrange(5000)}"}}
            )
        out.append({"aggregations": aggs.result(state), "sketches": aggs.sketches(state)})
    return out


def records(total: int, groups: int, end: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """About ``total`` (key, value) rollup records ending at ``end``: half cart, half count-only."""
    rng = random.Random(seed)
    bodies = {CART.name: templates(CART, 300, rng), NAMES.name: templates(NAMES, 300, rng)}
    out: list[tuple[bytes, bytes]] = []
    per_group = max(1, total // (2 * groups))
    for spec, field in ((CART, "geo.country"), (NAMES, "action.target.name")):
        minutes = per_group - per_group // 60 - 2  # the hours and days of the same span too
        first = end - end % M - minutes * M
        windows = [(60, first + i * M) for i in range(minutes)]
        windows += [(3600, s) for s in range(first - first % H, end, H)]
        windows += [(86400, s) for s in range(first - first % D, end, D)]
        for g in range(groups):
            group = {field: f"{field.split('.')[-1]}-{g:03d}"}
            for interval, start in windows:
                size = interval * 1000
                record = {
                    "rollup": spec.name,
                    "interval": format_interval(interval),
                    "window_start": start,
                    "window_end": start + size,
                    "group": group,
                    **rng.choice(bodies[spec.name]),
                    "final": start + size + M <= end,
                    "updated_at": end,
                }
                key = {
                    "rollup": spec.name,
                    "interval": record["interval"],
                    "window_start": start,
                    "group": group,
                }
                # Copies: orjson's own output keeps a spare buffer of ~8 kB (RSS, measured).
                out.append((bytes(memoryview(orjson.dumps(key))), bytes(memoryview(orjson.dumps(record)))))
    return out


async def publish(settings: Settings, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=50, max_batch_size=1 << 20,
        **client_kwargs(settings),
    )  # fmt: skip
    await producer.start()
    try:
        pending = []
        for key, value in items:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def drop_topics(settings: Settings) -> None:
    """Delete the benchmark's topics (they hold hundreds of MB)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **client_kwargs(settings))
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(settings.kafka.topic_prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def catch_up(settings: Settings, stops: list[int], aggs: str, end: int) -> dict[str, Any]:
    """Read the topic until caught up (records/s), then query at once while the reader builds columns.

    The reader builds window columns after it caught up, a slice at a time
    (``pipeline.view.warm``). Right after it reports caught up, the rolling-1d
    queries of ``stops`` are issued one after the other on the same event loop,
    as requests to ``serve`` would be: each one's time includes the building
    slice it may have waited for, and it builds the windows it uses that are not
    built yet. Then: the seconds until every window was built.
    """
    store = ViewStore(retention_ms=None)
    reader = ViewReader(settings, store)
    started = time.perf_counter()
    await reader.start()
    task = asyncio.create_task(reader.run())
    await reader.caught_up.wait()
    elapsed = time.perf_counter() - started
    catalog = catalog_of(CONFIG)
    limits = Limits(retention_ms=30 * D, max_range_ms=30 * D)
    times, built = [], []
    for stop in stops:
        before = time.perf_counter()
        await asyncio.sleep(0)  # the reader's turn: a request waits for it too
        cache_built = store.window_cache.built
        params = {"rollup": CART.name, "from": str(stop - D), "to": str(stop), "agg": aggs}
        answer = run_query(store, parse_query(params, [], catalog, end, limits), limits)
        times.append((time.perf_counter() - before) * 1000)
        built.append(store.window_cache.built - cache_built)
        assert answer["groups"], "no groups answered"
    while not reader.progress.warm:
        await asyncio.sleep(0.01)
    assert reader.progress.caught_up_at is not None and reader.progress.warm_at is not None
    warm_s = reader.progress.warm_at - reader.progress.caught_up_at
    rolling_at = getattr(reader.progress, "rolling_at", None)
    rolling_s = None if rolling_at is None else rolling_at - reader.progress.caught_up_at
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await reader.stop()
    return {
        "store": store,
        "seconds": elapsed,
        "records": reader.progress.records,
        "warm_s": warm_s,
        "rolling_s": rolling_s,
        "warm_windows": reader.warmer.built if reader.warmer else 0,
        "warm_cache_bytes": store.window_cache.nbytes,
        "after_caught_up": {
            "p50_ms": statistics.median(times),
            "p99_ms": _p99(times),
            "first_query_ms": times[0],
            "queries_that_built_windows": sum(1 for b in built if b),
        },
    }


def memory_per_key(
    items: list[tuple[bytes, bytes]], rollup: str, sample: int, spill: SketchSpill | None = None
) -> float:
    """Bytes the store allocates per key kept, for ``sample`` records of ``rollup``.

    With ``spill``, the sketches go to RocksDB, whose own (C++) memory is not counted:
    its memtables are bounded by its options, whatever the number of keys.
    """
    chosen = [v for _, v in items if orjson.loads(v)["rollup"] == rollup][:sample]
    store = ViewStore(spill=spill)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for value in chosen:
        store.apply_rollup(None, value)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / max(store.keys, 1)


def latency(store: ViewStore, end: int, queries: int, aggs: str, rng: random.Random) -> dict[str, Any]:
    """p50/p99 ms of rolling-1d queries ending at random minutes of the last 10 hours.

    The store's window cache starts empty; the same queries run twice: the first
    pass builds the columns of each window on its first use (the first query
    builds all of its 83), the second finds them all (as a live view does for
    windows that did not change since; a changed window is built again).
    """
    catalog = catalog_of(CONFIG)
    limits = Limits(retention_ms=30 * D, max_range_ms=30 * D)
    stops = [end - end % M - rng.randrange(0, 600) * M for _ in range(queries)]
    store.window_cache.clear()
    passes, cpu = [], []
    for _ in range(2):
        times = []
        cpu.clear()  # the CPU time of the last pass: what the machine's other load does not change
        for stop in stops:
            params = {"rollup": CART.name, "from": str(stop - D), "to": str(stop), "agg": aggs}
            started, used = time.perf_counter(), time.process_time()
            answer = run_query(store, parse_query(params, [], catalog, end, limits), limits)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - used) * 1000)
            assert answer["groups"], "no groups answered"
        passes.append(times)
    first, second = passes
    return {
        "p50_ms": statistics.median(second),
        "p99_ms": _p99(second),
        "cpu_p50_ms": statistics.median(cpu),
        "cpu_p99_ms": _p99(cpu),
        "first_query_ms": first[0],
        "first_pass_p50_ms": statistics.median(first),
        "first_pass_p99_ms": _p99(first),
        "cache_bytes": store.window_cache.nbytes,
        "groups": len(answer["groups"]),
        "windows": sum(answer["windows"].values()),
    }


def moving_clock(
    store: ViewStore, end: int, queries: int, aggs: str, spans: tuple[int, ...]
) -> dict[str, Any]:
    """Rolling ``last 1d`` queries at a clock moving one minute a query from ``end``, on a view
    warmed from an empty cache with ``spans`` (the rolling spans whose edges are built first;
    none: days, hours, then minutes newest first, the order before).

    Before each query the warmer builds until it has nothing left to do, as a live reader
    does within a minute (warming everything takes a few seconds): what is measured is
    what the order leaves to the queries as the clock moves, the start of the day moving
    into hours no query used yet. How many queries built windows, their p50 / p99.
    """
    catalog = catalog_of(CONFIG)
    limits = Limits(retention_ms=30 * D, max_range_ms=30 * D)
    store.window_cache.clear()
    clock = [end]
    warmer = Warmer(store, spans_ms=spans, clock=lambda: clock[0])
    times, cpu, built = [], [], 0
    for i in range(queries):
        clock[0] = end + i * M
        while not warmer.step(WARM_SLICE_S):
            pass
        before = store.window_cache.built
        params = {"rollup": CART.name, "last": "1d", "agg": aggs}
        started, used = time.perf_counter(), time.process_time()
        answer = run_query(store, parse_query(params, [], catalog, clock[0], limits), limits)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
        built += store.window_cache.built > before
        assert answer["groups"], "no groups answered"
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": _p99(times),
        "cpu_p50_ms": statistics.median(cpu),
        "cpu_p99_ms": _p99(cpu),
        "max_ms": max(times),
        "queries_that_built_windows": built,
        "warm_windows": warmer.built,
    }


def _p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=250)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1, help="accepted for the suite; one run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    settings = load_settings(topic_prefix=f"bench-query-{uuid.uuid4().hex[:8]}.")
    # As `rum-pipeline serve` and `query` run: RUM_GC_THRESHOLDS, and the view frozen once caught up.
    if settings.worker.gc_thresholds is not None:
        gc.set_threshold(*settings.worker.gc_thresholds)
    end = now_ms()
    print(f"making {args.records:,} rollup records over {args.groups} groups ...", flush=True)
    items = records(args.records, args.groups, end)
    asyncio.run(create_topics(settings))
    print(f"publishing {len(items):,} records to {settings.topic(ROLLUPS)} ...", flush=True)
    try:
        asyncio.run(publish(settings, settings.topic(ROLLUPS), items))
        print("catching up ...", flush=True)
        every = ",".join(a.name for a in CART.aggregations)
        # The stops of the first ``latency`` run below (the same generator and seed).
        pick = random.Random(2)
        stops = [end - end % M - pick.randrange(0, 600) * M for _ in range(args.queries)]
        caught = asyncio.run(catch_up(settings, stops, every, end))
        store, seconds, read = caught["store"], caught["seconds"], caught["records"]
    finally:
        asyncio.run(drop_topics(settings))
    rate = read / seconds
    gc.collect()
    gc.freeze()
    print(
        f"catch-up: {read:,} records in {seconds:.1f} s = {rate:,.0f} records/s; {store.keys:,} keys",
        flush=True,
    )
    sample = min(100_000, len(items) // 2)
    mem = {
        "cart (every aggregation, DDSketch, HLL)": memory_per_key(items, CART.name, sample),
        "count + HLL": memory_per_key(items, NAMES.name, sample),
    }
    with tempfile.TemporaryDirectory() as folder:
        spill = SketchSpill(Path(folder), capacity=0)
        mem["cart, sketches in RocksDB (serve --sketches-in-memory)"] = memory_per_key(
            items, CART.name, sample, spill
        )
        spill.close()
    warm = caught["after_caught_up"]
    print(
        f"right after caught up, {args.queries} rolling 1d queries (every aggregation), one after "
        f"the other while the reader builds columns: p50 {warm['p50_ms']:.1f} ms, "
        f"p99 {warm['p99_ms']:.1f} ms, "
        f"the first {warm['first_query_ms']:.0f} ms, {warm['queries_that_built_windows']} built windows; "
        + (
            f"days, hours and rolling edges built {caught['rolling_s']:.1f} s after caught up, "
            if caught["rolling_s"] is not None
            else ""
        )
        + f"every window built {caught['warm_s']:.1f} s after caught up "
        f"({caught['warm_windows']:,} windows, cache {caught['warm_cache_bytes'] / 1e6:.0f} MB)",
        flush=True,
    )
    for kind, size in mem.items():
        print(f"memory per key, {kind}: {size:,.0f} bytes", flush=True)
    rng = random.Random(2)
    lat = {
        "count,sum,avg,min,max": latency(store, end, args.queries, "count,sum,avg,min,max", rng),
        "every aggregation (p50..p99, cardinality)": latency(
            store, end, args.queries, ",".join(a.name for a in CART.aggregations), rng
        ),
    }
    for what, figures in lat.items():
        print(
            f"rolling 1d query over {figures['groups']} groups ({figures['windows']} windows), {what}: "
            f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms with the windows cached "
            f"(CPU time p50 {figures['cpu_p50_ms']:.1f} ms, p99 {figures['cpu_p99_ms']:.1f}); "
            f"first use of the windows p50 {figures['first_pass_p50_ms']:.1f} ms, "
            f"p99 {figures['first_pass_p99_ms']:.1f} ms, "
            f"the very first query {figures['first_query_ms']:.0f} ms; "
            f"cache {figures['cache_bytes'] / 1e6:.0f} MB",
            flush=True,
        )
    every = ",".join(a.name for a in CART.aggregations)
    moving = {
        "rolling edges first": moving_clock(store, end, args.queries, every, ROLLING_SPANS_MS),
        "newest first (no edges)": moving_clock(store, end, args.queries, every, ()),
    }
    for order, figures in moving.items():
        print(
            f"rolling last 1d at a clock moving a minute a query, the view warmed in between "
            f"({order}), every aggregation: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms "
            f"(CPU time p50 {figures['cpu_p50_ms']:.1f}, p99 {figures['cpu_p99_ms']:.1f}); "
            f"{figures['queries_that_built_windows']} of {args.queries} built windows, "
            f"the slowest {figures['max_ms']:.0f} ms",
            flush=True,
        )
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    report = {
        "load_average": load,
        "records": read,
        "catch_up_s": seconds,
        "catch_up_per_s": rate,
        "keys": store.keys,
        "memory_per_key_bytes": mem,
        "query": lat,
        "moving_clock": moving,
        "after_caught_up": {
            **warm,
            "warm_s": caught["warm_s"],
            "rolling_s": caught["rolling_s"],
            "warm_windows": caught["warm_windows"],
            "warm_cache_bytes": caught["warm_cache_bytes"],
        },
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
