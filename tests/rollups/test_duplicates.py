"""Copies of actions dropped before enrichment are counted per window, under their own rollup."""

from __future__ import annotations

from pipeline.rollups.compiled import DUPLICATES
from pipeline.rollups.engine import RollupEngine
from pipeline.rollups.merge import Merger
from pipeline.schemas import MEASURE_ROLLUP, validate_record
from tests.rollups.test_idle import CONFIG, HOUR, T0, _action, _partials


def _duplicates(engine: RollupEngine, partition: int = 0) -> dict[int, dict]:
    merger = Merger(CONFIG.grace_seconds, CONFIG.retention_seconds)
    for value in _partials(engine, partition):
        merger.offer(value, partition)
    records = [u.value for u in merger.flush(now_ms=0) if u.topic == "rollups"]
    for record in records:
        assert validate_record(MEASURE_ROLLUP, record) == []
    return {r["window_start"]: r for r in records if r["rollup"] == DUPLICATES}


def test_copies_are_counted_per_window_and_nothing_else_changes() -> None:
    engine = RollupEngine(CONFIG)
    engine.restoring(0).finish()
    engine.apply(0, 1, _action(T0 + 5), receive_ms=T0)
    engine.duplicate(0, 2, T0 + 5)
    engine.duplicate(0, 3, T0 + 6)
    engine.duplicate(0, 4, T0 + HOUR + 1)
    found = _duplicates(engine)
    assert {start: r["aggregations"]["count"] for start, r in found.items()} == {T0: 2, T0 + HOUR: 1}
    assert all(r["group"] == {} for r in found.values())
    assert engine.counts["duplicates"] == 3
    assert engine.counts["applied"] == 1  # copies are not actions of any rollup


def test_a_copy_replayed_below_the_flushed_offset_is_not_counted_again() -> None:
    engine = RollupEngine(CONFIG)
    engine.restoring(0).finish()
    engine.duplicate(0, 7, T0)
    engine.flush(0)
    engine.duplicate(0, 7, T0)  # read again after a crash: the flushed state has it
    engine.duplicate(0, 8, T0)
    assert {s: r["aggregations"]["count"] for s, r in _duplicates(engine).items()} == {T0: 2}
