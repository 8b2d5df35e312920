"""Quiet raw partitions: their watermark moves on the wall clock so that windows can become final."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from pipeline.rollups.config import RollupConfigError, parse_rollup_config
from pipeline.rollups.engine import META_KEY, RollupEngine
from pipeline.rollups.merge import Merger, partial_record, watermark_record
from pipeline.rollups.stage import RollupStage
from pipeline.settings import load_settings
from tests.factory import minimal_action
from tests.rollups.fakes import FakeProducer, PlainWriters, restore

HOUR = 3_600_000
T0 = 1_764_331_200_000  # aligned to the hour
CONFIG = parse_rollup_config(
    """
rollups:
  - {name: n, group_by: [action.target.name], aggregations: [count], intervals: [1h]}
grace: 1m
idle: 2m
"""
)


def _action(date: int) -> dict[str, Any]:
    return minimal_action(date=date)


def _merged(merger: Merger, values: list[bytes]) -> dict[int, dict[str, Any]]:
    for value in values:
        merger.offer(value, 0)
    return {u.value["window_start"]: u.value for u in merger.flush(now_ms=0) if u.topic == "rollups"}


def _partials(engine: RollupEngine, partition: int) -> list[bytes]:
    changes, _meta = engine.flush(partition)
    watermark = engine.partitions[partition].watermark
    return [
        partial_record(p.encoded_key, p.partition, p.to_bytes(), watermark)[1]
        for p, evicted in changes
        if not evicted
    ]


def test_a_quiet_partition_stops_holding_its_windows_open() -> None:
    engine = RollupEngine(CONFIG)
    engine.restoring(0).finish()
    engine.restoring(1).finish()
    engine.apply(0, 0, _action(T0 + 10), receive_ms=T0)
    engine.apply(0, 1, _action(T0 + HOUR + 61_000), receive_ms=T0)  # partition 0 is past T0's window
    engine.apply(1, 0, _action(T0 + 20), receive_ms=T0)  # ...partition 1 then goes quiet
    merger = Merger(CONFIG.grace_seconds, CONFIG.retention_seconds)
    before = _merged(merger, _partials(engine, 0) + _partials(engine, 1))
    assert before[T0]["aggregations"]["count"] == 2 and before[T0]["final"] is False

    moved = T0 + HOUR + 61_000
    meta = engine.advance_idle(1, moved)
    assert meta is not None and meta[0] == META_KEY
    assert orjson.loads(meta[1]) == {"offset": 0, "watermark": moved}
    after = _merged(merger, [watermark_record(1, moved)[1]])
    assert after[T0]["final"] is True and after[T0]["aggregations"]["count"] == 2

    # An action that reaches partition 1 later for that window is late, not counted in it...
    verdicts = engine.apply(1, 1, _action(T0 + 30), receive_ms=moved)
    assert [(v.kind, v.window_start) for v in verdicts] == [("late", T0)]
    # ...and so it is on a replay after a crash: the meta record restores the moved watermark.
    restored = RollupEngine(CONFIG)
    restore(restored, 1, [meta])
    again = restored.apply(1, 1, _action(T0 + 30), receive_ms=moved)
    assert [(v.kind, v.window_start) for v in again] == [("late", T0)]


def test_only_flushed_partitions_move_and_never_backwards() -> None:
    engine = RollupEngine(CONFIG)
    engine.restoring(0).finish()
    assert engine.advance_idle(0, T0) is None  # never saw an action: holds nothing back
    assert engine.advance_idle(7, T0) is None  # not owned here
    engine.apply(0, 0, _action(T0), receive_ms=T0)
    assert engine.advance_idle(0, T0 + HOUR) is None  # an action is waiting to be flushed
    engine.flush(0)
    assert engine.advance_idle(0, T0 - 1) is None  # behind the watermark
    assert engine.advance_idle(0, T0 + HOUR) is not None
    assert engine.partitions[0].watermark == T0 + HOUR


def test_the_stage_writes_the_meta_record_first_then_tells_every_merger() -> None:
    settings = load_settings({"RUM_PARTITIONS": "3", "RUM_TOPIC_PREFIX": "x."})
    producer = FakeProducer()
    stage = RollupStage(settings, CONFIG, lambda: producer, set)
    writers = PlainWriters(producer)
    idle_ms = CONFIG.idle_seconds * 1000

    async def scenario() -> None:
        for partition in (0, 1, 2):
            stage.engine.restoring(partition).finish()
            stage.engine.apply(partition, 5, _action(T0), receive_ms=T0)
            stage.engine.flush(partition)
        stage.active = {0: T0, 1: T0, 2: T0 + HOUR}  # partition 2 had a batch just now
        stage.current = {0, 1, 2}
        now = T0 + HOUR + 1000
        # Partition 1 is quiet but not owned here: only 0 moves.
        assert await stage.advance_idle({0, 2}, now, writers) == [0]
        assert stage.engine.partitions[0].watermark == now - idle_ms
        assert stage.engine.partitions[1].watermark == T0
        assert (
            await stage.advance_idle({0, 2}, now + 1000, writers) == []
        )  # less than a step (idle / 6) later

    asyncio.run(scenario())
    topics = [(topic, partition) for topic, partition, _, _ in producer.sent]
    assert topics[0] == ("x.rum.internal.rollup-state", 0)
    assert sorted(topics[1:]) == [("x.rum.internal.rollup-partials", q) for q in range(3)]
    for _, _, key, value in producer.sent[1:]:
        assert key == b"__watermark__@0"
        assert orjson.loads(value or b"") == {"partition": 0, "watermark": T0 + HOUR + 1000 - idle_ms}


def test_idle_zero_turns_it_off() -> None:
    config = parse_rollup_config("idle: 0s\n")
    assert config.idle_seconds == 0
    stage = RollupStage(load_settings({}), config, FakeProducer, set)
    writers = PlainWriters(FakeProducer())
    stage.engine.restoring(0).finish()
    stage.engine.apply(0, 0, _action(T0), receive_ms=T0)
    stage.engine.flush(0)
    stage.active = {0: 0}
    stage.current = {0}
    assert asyncio.run(stage.advance_idle({0}, T0 + 10 * HOUR, writers)) == []
    assert stage.engine.partitions[0].watermark == T0


def test_a_bad_idle_value_is_named() -> None:
    with pytest.raises(RollupConfigError) as raised:
        parse_rollup_config("idle: soon\n")
    assert raised.value.errors == ("idle: bad duration 'soon' (use e.g. 30s, 1m, 1h, 1d)",)


class FakeReader:
    """The changelog of each raw partition, handed over as ``TopicReader.read_each`` does."""

    def __init__(self, changelog: dict[int, list[tuple[bytes, bytes | None]]]) -> None:
        self.changelog = changelog
        self.reads: list[set[int]] = []

    async def read_each(self, topic: str, partitions: Any, take: Any) -> None:
        self.reads.append(set(partitions))
        for partition in sorted(partitions):
            records = self.changelog.get(partition, [])
            for start in range(0, len(records), 2):  # in small chunks, as fetches may come
                take(partition, records[start : start + 2])


def test_after_a_rebalance_state_is_read_again_before_it_moves() -> None:
    settings = load_settings({"RUM_PARTITIONS": "2", "RUM_TOPIC_PREFIX": "x."})
    producer = FakeProducer()
    stage = RollupStage(settings, CONFIG, lambda: producer, set)
    writers = PlainWriters(producer)
    idle_ms = CONFIG.idle_seconds * 1000
    # Stale state here (offset 3, watermark T0); the changelog has moved on (another owner).
    stage.engine.restoring(0).finish()
    stage.engine.apply(0, 3, _action(T0), receive_ms=T0)
    stage.engine.flush(0)
    stage.active = {0: T0}
    stage.current = {0}
    stage.rebalanced(now=T0 + 2 * HOUR - idle_ms)
    moved_on = orjson.dumps({"offset": 90, "watermark": T0 + HOUR})
    reader = FakeReader({0: [(META_KEY, moved_on)]})
    stage.reader = reader  # type: ignore[assignment]
    now = T0 + 2 * HOUR

    async def scenario() -> None:
        # Not read while the rebalance is younger than ``idle``: its first batch may come.
        assert await stage.advance_idle({0}, now - 1, writers) == [] and reader.reads == []
        # Read from the changelog and quiet only from now on: nothing moves yet.
        assert await stage.advance_idle({0}, now, writers) == []
        assert reader.reads == [{0}]
        assert (stage.engine.partitions[0].offset, stage.engine.partitions[0].watermark) == (90, T0 + HOUR)
        assert stage.needs_restore([(0, 7)])  # the next batch restores it again
        assert await stage.advance_idle({0}, now + idle_ms, writers) == [0]
        assert reader.reads == [{0}]  # read once

    asyncio.run(scenario())
    meta = orjson.loads(producer.sent[0][3] or b"")
    assert meta == {"offset": 90, "watermark": now}  # the changelog's offset, not the stale 3


def test_state_waiting_for_a_flush_is_not_read_over() -> None:
    stage = RollupStage(load_settings({}), CONFIG, FakeProducer, set)
    writers = PlainWriters(FakeProducer())
    stage.engine.restoring(0).finish()
    stage.engine.apply(0, 3, _action(T0), receive_ms=T0)  # held until the next flush
    stage.reader = FakeReader({})  # type: ignore[assignment]
    assert asyncio.run(stage.advance_idle({0}, T0 + 10 * HOUR, writers)) == []
    assert stage.reader.reads == []  # type: ignore[attr-defined]
    assert stage.engine.partitions[0].pending


def test_a_partition_with_records_left_to_read_is_not_quiet() -> None:
    stage = RollupStage(load_settings({}), CONFIG, FakeProducer, set)
    writers = PlainWriters(FakeProducer())
    stage.engine.restoring(0).finish()
    stage.engine.apply(0, 0, _action(T0), receive_ms=T0)
    stage.engine.flush(0)
    stage.active, stage.current = {0: 0}, {0}
    # No batch for hours, but the consumer has not read to the end: a backlog, not quiet.
    assert asyncio.run(stage.advance_idle({0}, T0 + 10 * HOUR, writers, caught_up=lambda _p: False)) == []
    assert asyncio.run(stage.advance_idle({0}, T0 + 10 * HOUR, writers, caught_up=lambda _p: True)) == [0]


class RebalancingReader(FakeReader):
    """A reader during whose read the partitions move to another worker."""

    def __init__(self, stage: RollupStage) -> None:
        super().__init__({0: [(META_KEY, orjson.dumps({"offset": 4, "watermark": T0}))]})
        self.stage = stage

    async def read_each(self, topic: str, partitions: Any, take: Any) -> None:
        self.stage.rebalanced(now=0)
        await super().read_each(topic, partitions, take)


def test_a_rebalance_during_its_reads_stops_it_before_any_write() -> None:
    producer = FakeProducer()
    stage = RollupStage(load_settings({}), CONFIG, lambda: producer, set)
    writers = PlainWriters(producer)
    stage.reader = RebalancingReader(stage)  # type: ignore[assignment]
    maps = len(stage.spill.maps)
    assert asyncio.run(stage.advance_idle({0}, T0 + 10 * HOUR, writers)) == []
    assert producer.sent == [] and stage.current == set()
    # What was read is not installed: the partition's next batch restores it again.
    assert not stage.engine.loaded(0) and stage.needs_restore([(0, 1)])
    assert len(stage.spill.maps) == maps
