"""When the worker flushes rollup state: every interval, stretched while full batches keep coming."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pipeline.app import RollupFlusher


def flusher(interval: float = 1.0, batch_size: int = 500) -> RollupFlusher:
    return RollupFlusher(stage=None, interval=interval, batch_size=batch_size)  # type: ignore[arg-type]


def aged(f: RollupFlusher, seconds: float) -> None:
    """Pretend the last flush happened ``seconds`` ago."""
    f.last = time.monotonic() - seconds


def test_nothing_to_flush_is_never_due() -> None:
    f = flusher()
    aged(f, 100)
    assert not f.due()


def test_partial_batches_flush_every_interval() -> None:
    f = flusher()
    f.hold([object()] * 120)
    aged(f, 0.5)
    assert not f.due()
    aged(f, 1.01)
    assert f.due()


def test_full_batches_stretch_the_period_until_traffic_pauses() -> None:
    f = flusher()
    f.hold([object()] * 500)
    aged(f, 1.5)
    assert not f.due()  # behind: up to 5 intervals
    aged(f, 5.01)
    assert f.due()
    aged(f, 1.5)
    f.held_at = time.monotonic() - 1.2  # no batch for longer than an interval: a pause
    assert f.due()


class _Ends:
    """Stands in for the consumer's position: at the end of the raw partitions or not; counts the asks."""

    def __init__(self, at_end: bool) -> None:
        self.at_end = at_end
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.at_end


def test_the_end_of_a_backlog_is_flushed_at_once() -> None:
    ends = _Ends(at_end=True)
    f = RollupFlusher(stage=None, interval=1.0, batch_size=500, caught_up=ends)  # type: ignore[arg-type]
    f.hold([object()] * 500)
    f.hold([object()] * 500)
    assert not f.due() and ends.asked == 0  # full batches: still behind
    f.hold([object()] * 37)  # the last, short batch, with nothing more to read
    assert ends.asked == 1
    assert f.due()  # no waiting for the period


def test_a_short_batch_with_records_still_waiting_keeps_the_period() -> None:
    ends = _Ends(at_end=False)
    f = RollupFlusher(stage=None, interval=1.0, batch_size=500, caught_up=ends)  # type: ignore[arg-type]
    f.hold([object()] * 500)
    f.hold([object()] * 37)
    assert ends.asked == 1
    assert not f.due()
    aged(f, 1.01)
    assert f.due()


def test_live_traffic_keeps_the_period_and_never_asks_for_the_end() -> None:
    ends = _Ends(at_end=True)
    f = RollupFlusher(stage=None, interval=1.0, batch_size=500, caught_up=ends)  # type: ignore[arg-type]
    for _ in range(3):
        f.hold([object()] * 40)
    assert not f.due()
    assert ends.asked == 0
    aged(f, 1.01)
    assert f.due()


def test_too_many_held_events_flush_at_the_interval() -> None:
    f = flusher()
    events: list[Any] = [object()] * 500
    for _ in range(RollupFlusher.MAX_HELD // 500):
        f.hold(events)
    aged(f, 1.01)
    assert f.due()


@pytest.mark.parametrize("batch_size", [0, 1000])
def test_without_a_known_batch_size_or_below_it_nobody_is_behind(batch_size: int) -> None:
    f = flusher(batch_size=batch_size)
    f.hold([object()] * 500)
    aged(f, 1.01)
    assert f.due()


class _Recorder:
    """Stands in for the stage, the stream and the consumer, writing down the order of calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def flush(self, partitions: set[int]) -> None:
        self.calls.append(f"flush {sorted(partitions)}")

    async def ack(self, event: Any) -> None:
        self.calls.append(f"ack {event.message.partition}")

    async def commit(self) -> bool:
        self.calls.append("commit")
        return True


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = type("Message", (), {"partition": partition})()


def test_a_flush_writes_state_then_acknowledges_then_commits() -> None:
    recorder = _Recorder()
    f = RollupFlusher(recorder, 1.0, 500, recorder.commit)  # type: ignore[arg-type]
    f.stream = recorder
    f.hold([_Event(3), _Event(1)])
    asyncio.run(f.flush())
    assert recorder.calls == ["flush [1, 3]", "ack 3", "ack 1", "commit"]
    assert not f.events
    asyncio.run(f.flush())  # nothing held: nothing acknowledged, nothing committed
    assert recorder.calls[4:] == ["flush []"]


def test_while_draining_every_held_batch_is_due_at_once() -> None:
    f = flusher()
    f.hold([object()] * 10)
    assert not f.due()  # flushed a moment ago
    f.draining = 1
    assert f.due()
    f.events.clear()
    assert not f.due()  # nothing held, nothing to flush


def test_a_commit_that_waited_for_another_is_made_again() -> None:
    recorder = _Recorder()
    answers = iter([False, True])  # faust: False when it only waited for a commit in flight

    async def commit() -> bool:
        recorder.calls.append("commit")
        return next(answers)

    f = RollupFlusher(recorder, 1.0, 500, commit)  # type: ignore[arg-type]
    f.stream = recorder
    f.hold([_Event(0)])
    asyncio.run(f.flush())
    assert recorder.calls == ["flush [0]", "ack 0", "commit", "commit"]


def test_after_the_flush_that_ended_a_backlog_the_period_applies_again() -> None:
    recorder = _Recorder()
    f = RollupFlusher(recorder, 1.0, 500, recorder.commit, _Ends(at_end=True))  # type: ignore[arg-type]
    f.stream = recorder
    f.hold([_Event(2)] * 500)
    f.hold([_Event(2)] * 3)
    assert f.due()
    asyncio.run(f.flush())
    f.hold([_Event(2)] * 3)  # live traffic again
    assert not f.due()
