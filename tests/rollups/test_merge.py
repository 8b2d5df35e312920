"""The merge stage: latest partial per source partition, finality by watermark, facet records, eviction."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.compiled import FACET_PREFIX
from pipeline.rollups.merge import (
    WATERMARK_KEY,
    Merger,
    partial_record,
    route,
    tombstone_key,
    watermark_record,
)
from pipeline.rollups.partials import Partial, RollupKey
from pipeline.schemas import FACET_INDEX, MEASURE_ROLLUP, validate_record

MINUTE = 60_000
T0 = 1_765_000_000_000 - 1_765_000_000_000 % (60 * MINUTE)
AGGS = AggregationSet.of(("count", "sum", "max"))
FRANCE = RollupKey("cart", "1m", T0, (("geo.country", "France"),))
GRACE_S = 30


def partial(
    partition: int,
    values: list[float],
    last_offset: int,
    key: RollupKey = FRANCE,
    watermark: int | None = None,
) -> bytes:
    """The partials-topic value of one source partition's partial holding ``values``."""
    part = Partial(key, partition, AGGS)
    part.add_many(values, [{} for _ in values], last_offset)
    return partial_record(part.encoded_key, partition, part.to_bytes(), watermark)[1]


def rollups(merger: Merger, now_ms: int = 0) -> list[dict[str, Any]]:
    records = [u.value for u in merger.flush(now_ms) if u.topic == "rollups"]
    for record in records:
        assert validate_record(MEASURE_ROLLUP, record) == []
    return records


def test_route_depends_on_rollup_interval_and_window_but_not_on_the_group() -> None:
    spain = RollupKey("cart", "1m", T0, (("geo.country", "Spain"),))
    assert route(FRANCE, 12) == route(spain, 12)
    # Stable across processes and languages: CRC-32 of the compact JSON.
    assert route(FRANCE, 12) == zlib.crc32(b'["cart","1m",%d]' % T0) % 12
    # Windows of one rollup spread over the partitions (one busy rollup does not load one merger).
    assert len({route(RollupKey("cart", "1m", T0 + i * MINUTE), 12) for i in range(50)}) > 6


def test_record_keys_carry_the_source_partition() -> None:
    key, value = partial_record(b'{"k":1}', 3, b'{"p":1}', None)
    assert key == b'{"k":1}@3' == tombstone_key(b'{"k":1}', 3)
    assert orjson.loads(value) == {"partial": {"p": 1}, "watermark": None}
    assert orjson.loads(partial_record(b"k", 0, b"{}", 1234)[1])["watermark"] == 1234
    key, value = watermark_record(5, 999)
    assert key == WATERMARK_KEY + b"@5"
    assert orjson.loads(value) == {"partition": 5, "watermark": 999}


def test_partials_of_two_source_partitions_add_up() -> None:
    merger = Merger(GRACE_S, 86_400)
    merger.offer(partial(0, [10.0, 20.0], 7), route_partition=4)
    merger.offer(partial(1, [5.0], 2), route_partition=4)
    [record] = rollups(merger)
    assert record["aggregations"] == {"count": 3, "sum": 35.0, "max": 20.0}
    assert record["group"] == {"geo.country": "France"} and record["final"] is False
    assert merger.route_partitions() == {4}


def test_a_repeated_or_older_partial_changes_nothing() -> None:
    merger = Merger(GRACE_S, 86_400)
    merger.offer(partial(0, [10.0, 20.0], 7), 0)
    assert len(rollups(merger)) == 1
    merger.offer(partial(0, [10.0, 20.0], 7), 0)  # the same partial again (a replay)
    merger.offer(partial(0, [10.0], 3), 0)  # an older one, arriving late
    merger.offer(None, 0)  # a tombstone
    assert rollups(merger) == []  # nothing changed: nothing to write
    merger.offer(partial(0, [10.0, 20.0, 1.0], 9), 0)  # newer: replaces, not adds
    [record] = rollups(merger)
    assert record["aggregations"]["count"] == 3


def test_a_window_turns_final_once_every_partition_passed_its_end_plus_grace() -> None:
    merger = Merger(GRACE_S, 86_400)
    end = FRANCE.window_end
    merger.offer(partial(0, [1.0], 1, watermark=end + GRACE_S * 1000), 0)
    merger.offer(partial(1, [2.0], 1, watermark=end), 0)  # partition 1 is not past the grace yet
    assert [r["final"] for r in rollups(merger)] == [False]
    assert merger.low_watermark() == end
    _, value = watermark_record(1, end + GRACE_S * 1000)
    merger.offer(value, 0)  # a watermark-only record moves partition 1 on
    [record] = rollups(merger)
    assert record["final"] is True and record["aggregations"]["count"] == 2
    assert rollups(merger) == []  # final is written once


def test_windows_older_than_the_retention_are_forgotten() -> None:
    merger = Merger(GRACE_S, retention_seconds=3600)
    merger.offer(partial(0, [1.0], 1), 0)
    rollups(merger)
    merger.offer(watermark_record(0, FRANCE.window_end + 3600 * 1000 + 1)[1], 0)
    rollups(merger)
    assert merger.route_partitions() == set() and merger.low_watermark() is not None


def test_drop_forgets_the_keys_of_a_partials_partition() -> None:
    merger = Merger(GRACE_S, 86_400)
    spain = RollupKey("cart", "1m", T0, (("geo.country", "Spain"),))
    merger.offer(partial(0, [1.0], 1), 2)
    merger.offer(partial(0, [1.0], 1, key=spain), 3)
    merger.drop(2)
    assert merger.route_partitions() == {3}
    assert [r["group"] for r in rollups(merger)] == [{"geo.country": "Spain"}]


def facet_partial(partition: int, values: list[str], last_offset: int) -> bytes:
    aggregations = AggregationSet.of(("count", "values(geo.country)"))
    key = RollupKey(FACET_PREFIX + "geo.country", "1h", T0)
    part = Partial(key, partition, aggregations)
    part.add_many(None, [{"geo": {"country": v}} for v in values], last_offset)
    return partial_record(part.encoded_key, partition, part.to_bytes(), None)[1]


def test_a_facet_window_writes_its_changed_values_and_its_distinct_count() -> None:
    merger = Merger(GRACE_S, 86_400)
    merger.offer(facet_partial(0, ["France", "France", "Spain"], 3), 0)
    first = [u.value for u in merger.flush(0)]
    for record in first:
        assert validate_record(FACET_INDEX, record) == []
    values = {r["value"]: r["count"] for r in first if r["kind"] == "value"}
    assert values == {"France": 2, "Spain": 1}
    assert [r["unique_values"] for r in first if r["kind"] == "facet"] == [2]
    merger.offer(facet_partial(0, ["France", "France", "Spain", "Spain", "Italy"], 5), 0)
    second = merger.flush(0)
    # France did not change: only Spain, Italy and the window summary are written.
    assert {u.value.get("value") for u in second} == {"Spain", "Italy", None}
    assert [u.value["unique_values"] for u in second if u.value["kind"] == "facet"] == [3]
