"""Partitions moved to another worker: their rollup state is forgotten, and read again if they return."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from pipeline.rollups.engine import META_KEY
from pipeline.rollups.stage import RollupStage
from pipeline.settings import load_settings
from tests.rollups.fakes import FakeProducer, PlainWriters
from tests.rollups.test_idle import CONFIG, T0, FakeReader, _action


def _stage() -> tuple[RollupStage, FakeProducer]:
    producer = FakeProducer()
    stage = RollupStage(load_settings({"RUM_PARTITIONS": "4"}), CONFIG, lambda: producer, set)
    return stage, producer


def _owned_and_flushed(stage: RollupStage, partitions: range) -> None:
    for partition in partitions:
        stage.engine.restoring(partition).finish()
        stage.engine.apply(partition, 1, _action(T0), receive_ms=T0)
        stage.engine.flush(partition)
        stage.current.add(partition)
        stage.active[partition] = T0


def test_state_of_partitions_owned_elsewhere_is_forgotten() -> None:
    stage, _ = _stage()
    _owned_and_flushed(stage, range(4))
    in_memory = stage.spill.in_memory()
    assert stage.release({0, 2}) == [1, 3]
    assert sorted(stage.engine.partitions) == [0, 2]
    assert stage.spill.in_memory() == in_memory // 2
    assert stage.current == {0, 2} and sorted(stage.active) == [0, 2]
    assert stage.release({0, 2}) == []


def test_state_still_to_flush_stays_until_flushed() -> None:
    stage, _ = _stage()
    _owned_and_flushed(stage, range(2))
    stage.engine.apply(1, 2, _action(T0 + 1), receive_ms=T0)  # held for the next flush
    assert stage.release({0}) == []
    assert stage.engine.unflushed(1)
    stage.engine.flush(1)
    assert stage.release({0}) == [1]


def test_a_partition_that_returns_is_read_from_its_changelog() -> None:
    stage, _ = _stage()
    _owned_and_flushed(stage, range(2))
    stage._generation = {0: 5, 1: 5}
    stage.release({0})
    # Another worker had partition 1 meanwhile: its changelog moved on.
    moved_on = orjson.dumps({"offset": 40, "watermark": T0 + 1000})
    stage.reader = FakeReader({1: [(META_KEY, moved_on)]})  # type: ignore[assignment]
    assert stage.needs_restore([(1, 5)])  # even under the same generation number
    asyncio.run(stage.prepare([(1, 5)]))
    assert (stage.engine.partitions[1].offset, stage.engine.partitions[1].watermark) == (40, T0 + 1000)
    assert stage.engine.apply(1, 40, _action(T0), receive_ms=T0) == []
    assert stage.engine.counts["replayed"] == 1  # at or below the changelog's offset: already counted


def test_a_flush_after_the_release_skips_the_released_partition(caplog: pytest.LogCaptureFixture) -> None:
    stage, producer = _stage()
    _owned_and_flushed(stage, range(2))
    stage.engine.apply(0, 2, _action(T0 + 1), receive_ms=T0)
    stage.release({0})
    # Actions of partition 1 that were all replays may still be held: their flush writes nothing for it.
    with caplog.at_level(logging.WARNING):
        asyncio.run(stage.flush([0, 1], PlainWriters(producer)))
    assert {partition for topic, partition, _, _ in producer.sent if topic.endswith("rollup-state")} == {0}
    assert "actions of partition 1 held for a flush, but its state was released" in caplog.text
