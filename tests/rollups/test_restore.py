"""Restoring a partition's rollup state from its changelog, records taken as they are read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeline.rollups.engine import RollupEngine
from pipeline.rollups.stage import RollupStage
from pipeline.settings import load_settings
from tests.rollups.fakes import restore
from tests.rollups.test_idle import CONFIG, T0, FakeProducer, FakeReader, _action


def _changelog(partitions: range) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """Each partition's changelog after three actions in three hours, flushed after each."""
    engine = RollupEngine(CONFIG)
    changelog: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for partition in partitions:
        engine.restoring(partition).finish()
        records = changelog[partition] = []
        for offset in range(3):
            engine.apply(partition, offset, _action(T0 + offset * 3_600_000), receive_ms=T0 + 10**8)
            changes, meta = engine.flush(partition)
            records.extend((p.encoded_key, p.to_bytes()) for p, _ in changes)
            records.append(meta)  # type: ignore[arg-type]
    return changelog


class FailingReader(FakeReader):
    """Hands over the first chunk of the first partition, then fails as a broken connection would."""

    async def read_each(self, topic: str, partitions: Any, take: Any) -> None:
        first = min(partitions)
        take(first, self.changelog[first][:2])
        raise ConnectionError("broker went away")


def test_a_read_cut_short_installs_nothing() -> None:
    stage = RollupStage(load_settings({}), CONFIG, FakeProducer, set)
    stage.reader = FailingReader(_changelog(range(3)))  # type: ignore[assignment]
    maps = len(stage.spill.maps)
    with pytest.raises(ConnectionError):
        asyncio.run(stage.prepare([(0, 1), (1, 1), (2, 1)]))
    assert not any(stage.engine.loaded(p) for p in range(3))
    assert len(stage.spill.maps) == maps and stage.spill.in_memory() == 0
    assert stage.needs_restore([(0, 1)])  # the next batch reads it all again
    stage.reader = FakeReader(_changelog(range(3)))  # type: ignore[assignment]
    asyncio.run(stage.prepare([(0, 1), (1, 1), (2, 1)]))
    assert all(stage.engine.partitions[p].offset == 2 for p in range(3))


def test_a_restore_in_chunks_equals_one_of_all_records() -> None:
    records = _changelog(range(1))[0]
    whole = restore(RollupEngine(CONFIG), 0, records)
    engine = RollupEngine(CONFIG)
    restoring = engine.restoring(0)
    for start in range(0, len(records), 3):
        restoring.add(records[start : start + 3])
    assert not engine.loaded(0)  # nothing visible before the end
    state = restoring.finish()
    assert engine.loaded(0) and engine.partitions[0] is state
    assert (state.offset, state.watermark, state.replay_until, state.dirty) == (
        whole.offset,
        whole.watermark,
        whole.replay_until,
        whole.dirty,
    )
    assert {s: state.partials[s].to_bytes() for s in state.partials} == {
        s: whole.partials[s].to_bytes() for s in whole.partials
    }


def test_a_restore_is_finished_or_abandoned_once() -> None:
    engine = RollupEngine(CONFIG)
    restore = engine.restoring(0)
    restore.add(_changelog(range(1))[0])
    state = restore.finish()
    with pytest.raises(RuntimeError, match="finished or abandoned"):
        restore.abandon()  # would empty the state now in use
    with pytest.raises(RuntimeError):
        restore.finish()
    assert engine.partitions[0] is state and len(state.partials) > 0
