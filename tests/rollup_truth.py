"""Ground truth for rollup tests, computed straight from the produced input.

The enrichment runs through the same Processor (its own tests cover it); the
aggregation here is plain Python over every event, independent of the
partial/merge machinery under test.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from pipeline.consume import assign_topics, make_reader
from pipeline.process import Processor
from pipeline.query.paths import compile_path, compile_values
from pipeline.rollups.compiled import DEFAULT_FACET_INTERVALS, DUPLICATES
from pipeline.rollups.config import RollupConfig
from pipeline.rollups.windows import format_interval, window_start
from pipeline.settings import Settings


@dataclass
class Truth:
    """Exact values per rollup key and facet value."""

    values: dict[tuple[str, str, int, tuple[Any, ...]], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    counts: dict[tuple[str, str, int, tuple[Any, ...]], int] = field(default_factory=lambda: defaultdict(int))
    users: dict[tuple[str, str, int, tuple[Any, ...]], set[Any]] = field(
        default_factory=lambda: defaultdict(set)
    )
    facets: dict[tuple[str, str, int, Any], int] = field(default_factory=lambda: defaultdict(int))


def ground_truth(config: RollupConfig, settings: Settings, payloads: list[bytes]) -> Truth:
    """Aggregate every good payload as the config asks, the slow and obvious way."""
    processor = Processor(settings)
    truth = Truth()
    for payload in payloads:
        out = processor.process(payload)
        event = out.event
        if event is None:
            continue
        for rollup in config.rollups:
            if not rollup.filter.matches(event):
                continue
            groups: list[tuple[Any, ...]] = [()]
            for path in rollup.group_by:
                found = list(dict.fromkeys(compile_values(path)(event))) or [None]
                groups = [(*g, v) for g in groups for v in found]
            measure = compile_path(rollup.measure)(event) if rollup.measure else None
            for interval in rollup.intervals:
                key_base = (rollup.name, format_interval(interval), window_start(event["date"], interval))
                for group in groups:
                    key = (*key_base, group)
                    truth.counts[key] += 1
                    if isinstance(measure, int | float) and not isinstance(measure, bool):
                        truth.values[key].append(float(measure))
                    user = event.get("usr", {}).get("id")
                    if user is not None:
                        truth.users[key].add(user)
        for facet in config.facets:
            for value in compile_values(facet.path)(event):
                for interval in DEFAULT_FACET_INTERVALS:
                    start = window_start(event["date"], interval)
                    truth.facets[(facet.path, format_interval(interval), start, value)] += 1
    return truth


async def _latest(settings: Settings, topic: str) -> dict[bytes, dict[str, Any]]:
    consumer = make_reader(settings)
    await consumer.start()
    try:
        await assign_topics(consumer, [topic])
        ends = await consumer.end_offsets(list(consumer.assignment()))
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        assert partitions, f"no partitions known for {topic}"
        kafka_default = DefaultPartitioner()
        latest: dict[bytes, dict[str, Any]] = {}
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=20000)
            for records in batch.values():
                for record in records:
                    # Compaction keeps one record per key only if every client places the key alike.
                    placed = kafka_default(record.key, partitions, partitions)
                    assert record.partition == placed, (
                        f"{topic}: key {record.key!r} in partition {record.partition}, "
                        f"Kafka's default placement is {placed}"
                    )
                    latest[record.key] = orjson.loads(record.value)
        return latest
    finally:
        await consumer.stop()


def latest_records(settings: Settings, topic: str) -> dict[bytes, dict[str, Any]]:
    """The latest value per key of a compacted upsert topic, as a downstream consumer sees it."""
    return asyncio.run(_latest(settings, topic))


def rollup_table(records: dict[bytes, dict[str, Any]]) -> dict[tuple[str, str, int, tuple[Any, ...]], dict]:
    """Rollup records keyed like :class:`Truth`."""
    return {
        (r["rollup"], r["interval"], r["window_start"], tuple(r["group"].values())): r
        for r in records.values()
    }


def mismatches(truth: Truth, table: dict[tuple[str, str, int, tuple[Any, ...]], dict]) -> list[str]:
    """Every difference between the rollup records and the truth (empty when they agree)."""
    problems = []
    missing = set(truth.counts) - set(table)
    if missing:
        problems.append(f"{len(missing)} keys missing, e.g. {sorted(missing, key=str)[:3]}")
    # Late counts and the count of dropped copies are checked by the tests that make them.
    extra = {k for k in table if not k[0].endswith(":late") and k[0] != DUPLICATES} - set(truth.counts)
    if extra:
        problems.append(f"{len(extra)} unexpected keys, e.g. {sorted(extra, key=str)[:3]}")
    for key, count in truth.counts.items():
        record = table.get(key)
        if record is None:
            continue
        aggs = record["aggregations"]
        if aggs["count"] != count:
            problems.append(f"{key}: count {aggs['count']} != {count}")
            continue
        values = truth.values.get(key, [])
        if "sum" in aggs and not math.isclose(aggs["sum"], math.fsum(values), rel_tol=1e-9, abs_tol=1e-9):
            problems.append(f"{key}: sum {aggs['sum']} != {math.fsum(values)}")
        if values and "min" in aggs and (aggs["min"] != min(values) or aggs["max"] != max(values)):
            problems.append(f"{key}: min/max {aggs['min']}/{aggs['max']} != {min(values)}/{max(values)}")
        ordered = sorted(values)
        for name in ("p50", "p90", "p99"):
            if values and name in aggs:
                # DDSketch's quantile q is the value of rank q * (n - 1); between two
                # ranks, either neighbour is right. Its guarantee: 1% relative error.
                rank = int(name[1:]) / 100 * (len(ordered) - 1)
                near = {ordered[math.floor(rank)], ordered[math.ceil(rank)]}
                if all(abs(aggs[name] - q) > 0.01 * abs(q) + 1e-9 for q in near):
                    problems.append(f"{key}: {name} {aggs[name]} vs {sorted(near)} beyond 1%")
        card = aggs.get("cardinality(usr.id)")
        if card is not None:
            exact = len(truth.users.get(key, ()))
            # HLL lg_k=12 after merges: ~1.6% standard error; 3 sigma, plus 1 for tiny counts.
            if abs(card - exact) > 0.05 * exact + 1:
                problems.append(f"{key}: cardinality {card} vs {exact}")
    return problems


def facet_mismatches(truth: Truth, records: dict[bytes, dict[str, Any]]) -> list[str]:
    """Differences between the facet-index value records and the truth."""
    got = {
        (r["facet"], r["interval"], r["window_start"], r["value"]): r["count"]
        for r in records.values()
        if r["kind"] == "value"
    }
    problems = [f"{k}: {got.get(k)} != {v}" for k, v in truth.facets.items() if got.get(k) != v]
    problems += [f"{k}: unexpected {v}" for k, v in got.items() if k not in truth.facets]
    return problems[:20]


def wait_for(check: Any, timeout: float, interval: float = 2.0) -> Any:
    """Call ``check`` until it returns a falsy list of problems or the timeout passes; return the last."""
    deadline = time.monotonic() + timeout
    while True:
        problems = check()
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(interval)
