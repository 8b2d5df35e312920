"""When the worker commits held outputs: every interval, stretched while full batches keep coming."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pipeline.worker.loop import BatchLoop

TOPICS = {"enriched": "e", "bad": "b", "late": "l"}


def make_loop(
    recorder: Any = None,
    interval: float = 1.0,
    batch_size: int = 500,
    commit: Any = None,
    caught_up: Any = None,
) -> BatchLoop:
    """A loop whose stage, writers and stream are ``recorder`` (or a stage-less recorder)."""
    loop = BatchLoop(
        None,  # type: ignore[arg-type]
        recorder,
        recorder or _Recorder(),
        None,
        TOPICS,
        interval,
        batch_size,
        commit_consumer=commit,
        caught_up=caught_up,
    )
    loop.stream = recorder
    return loop


def flusher(interval: float = 1.0, batch_size: int = 500) -> BatchLoop:
    return make_loop(interval=interval, batch_size=batch_size)


def aged(f: BatchLoop, seconds: float) -> None:
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
    f = make_loop(caught_up=ends)
    f.hold([object()] * 500)
    f.hold([object()] * 500)
    assert not f.due() and ends.asked == 0  # full batches: still behind
    f.hold([object()] * 37)  # the last, short batch, with nothing more to read
    assert ends.asked == 1
    assert f.due()  # no waiting for the period


def test_a_short_batch_with_records_still_waiting_keeps_the_period() -> None:
    ends = _Ends(at_end=False)
    f = make_loop(caught_up=ends)
    f.hold([object()] * 500)
    f.hold([object()] * 37)
    assert ends.asked == 1
    assert not f.due()
    aged(f, 1.01)
    assert f.due()


def test_live_traffic_keeps_the_period_and_never_asks_for_the_end() -> None:
    ends = _Ends(at_end=True)
    f = make_loop(caught_up=ends)
    for _ in range(3):
        f.hold([object()] * 40)
    assert not f.due()
    assert ends.asked == 0
    aged(f, 1.01)
    assert f.due()


def test_too_many_held_events_flush_at_the_interval() -> None:
    f = flusher()
    events: list[Any] = [object()] * 500
    for _ in range(BatchLoop.MAX_HELD // 500):
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

    exactly_once = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def flush(self, partitions: dict[int, int], writers: Any) -> None:
        self.calls.append(f"flush {sorted(partitions)}")

    async def commit(self, partition: int, next_offset: int | None) -> None:
        self.calls.append(f"txn {partition}@{next_offset}")

    async def ack(self, event: Any) -> None:
        self.calls.append(f"ack {event.message.partition}")

    async def commit_consumer(self) -> bool:
        self.calls.append("commit")
        return True


class _Event:
    def __init__(self, partition: int, offset: int = 0) -> None:
        self.message = type("Message", (), {"partition": partition, "offset": offset})()


def test_a_flush_writes_state_then_commits_each_partition_then_acknowledges() -> None:
    recorder = _Recorder()
    f = make_loop(recorder, commit=recorder.commit_consumer)
    f.hold([_Event(3, 7), _Event(1, 4), _Event(3, 9), _Event(3, 8)])
    asyncio.run(f.flush())
    # Each partition's transaction carries the offset after its highest held event.
    assert recorder.calls == [
        "flush [1, 3]",
        "txn 1@5",
        "txn 3@10",
        "ack 3",
        "ack 1",
        "ack 3",
        "ack 3",
        "commit",
    ]
    assert not f.events
    asyncio.run(f.flush())  # nothing held: nothing flushed, acknowledged or committed
    assert len(recorder.calls) == 8


def test_a_partition_lost_to_another_worker_is_forgotten_and_its_events_still_acknowledged() -> None:
    from pipeline.outputs import Fenced

    class Lost(_Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.forgotten: list[int] = []

        async def commit(self, partition: int, next_offset: int | None) -> None:
            await super().commit(partition, next_offset)
            if partition == 2:
                raise Fenced(partition)

        def forget(self, partition: int) -> None:
            self.forgotten.append(partition)

    recorder = Lost()
    f = make_loop(recorder)
    f.hold([_Event(2, 1), _Event(5, 1)])
    asyncio.run(f.flush())
    assert recorder.forgotten == [2]
    assert recorder.calls[-2:] == ["ack 2", "ack 5"]


def test_a_failed_commit_acknowledges_nothing_and_raises() -> None:
    class Broken(_Recorder):
        async def commit(self, partition: int, next_offset: int | None) -> None:
            raise RuntimeError("broker gone")

    recorder = Broken()
    f = make_loop(recorder)
    f.hold([_Event(0, 1)])
    with pytest.raises(RuntimeError, match="broker gone"):
        asyncio.run(f.flush())
    assert not any(call.startswith("ack") for call in recorder.calls)


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

    f = make_loop(recorder, commit=commit)
    f.hold([_Event(0)])
    asyncio.run(f.flush())
    assert recorder.calls == ["flush [0]", "txn 0@1", "ack 0", "commit", "commit"]


def test_after_the_flush_that_ended_a_backlog_the_period_applies_again() -> None:
    recorder = _Recorder()
    f = make_loop(recorder, commit=recorder.commit_consumer, caught_up=_Ends(at_end=True))
    f.hold([_Event(2)] * 500)
    f.hold([_Event(2)] * 3)
    assert f.due()
    asyncio.run(f.flush())
    f.hold([_Event(2)] * 3)  # live traffic again
    assert not f.due()


# -- exactly once: the next batches are processed while the last flush commits ---------------


class _Out:
    """What ``Processor.process`` returns for a valid, new action."""

    duplicate = False
    date = None

    def __init__(self, value: bytes) -> None:
        self.event = object()
        self.value = value


class _Processor:
    def process(self, value: bytes, **_kwargs: Any) -> _Out:
        return _Out(value)


class _GatedWriters:
    """Transactions of raw partitions 0 and 1 whose commits wait for ``gate``; writes down every call.

    ``sent`` holds, per partition, the records sent since its last commit (its open
    transaction); ``visible`` what commits made visible, as a read_committed reader sees it.
    """

    exactly_once = True

    def __init__(self) -> None:
        self.partitions = {0, 1}
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.failing: set[int] = set()
        self.fencing: set[int] = set()
        self.sent: dict[int, list[bytes]] = {0: [], 1: []}
        self.visible: list[bytes] = []

    def stale(self, partitions: Any) -> bool:
        return False

    async def ensure(self, partitions: Any) -> None:
        pass

    async def send(self, partition: int, outputs: Any) -> None:
        values: list[bytes] = []

        class Producer:  # no record batches: ``Outputs.send`` hands each record over
            async def send(self, topic: str, key: Any, value: bytes, *_args: Any) -> None:
                values.append(value)

        await outputs.send(Producer())
        self.calls.append(f"send {partition} {b','.join(values).decode()}")
        self.sent[partition].extend(values)

    async def commit(self, partition: int, next_offset: int | None) -> None:
        self.calls.append(f"txn {partition}@{next_offset} starts")
        await self.gate.wait()
        if partition in self.fencing:
            from pipeline.outputs import Fenced

            self.sent[partition] = []
            raise Fenced(partition)
        if partition in self.failing:
            self.sent[partition] = []  # aborted
            raise RuntimeError("broker gone")
        self.visible.extend(self.sent[partition])
        self.sent[partition] = []
        self.calls.append(f"txn {partition}@{next_offset} done")


class _Stream:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def ack(self, event: Any) -> None:
        self.calls.append(f"ack {event.message.partition}@{event.message.offset}")


class _RawEvent(_Event):
    def __init__(self, partition: int, offset: int) -> None:
        super().__init__(partition, offset)
        self.message.generation_id = 1  # type: ignore[attr-defined]
        self.message.key = None  # type: ignore[attr-defined]
        self.message.topic = "raw"  # type: ignore[attr-defined]
        self.message.value = b"%d:%d" % (partition, offset)  # type: ignore[attr-defined]


async def commits_over(loop: BatchLoop) -> None:
    """Let the commits under way run to their end (the loop is not told)."""
    assert loop.committing is not None
    await asyncio.wait([loop.committing])


def overlapping() -> tuple[BatchLoop, _GatedWriters]:
    writers = _GatedWriters()
    loop = BatchLoop(_Processor(), None, writers, None, TOPICS, 1.0, 500)  # type: ignore[arg-type]
    assert loop.overlap
    loop.stream = _Stream(writers.calls)
    return loop, writers


def test_outputs_of_a_batch_processed_during_a_commit_go_in_the_next_transaction() -> None:
    async def scenario() -> None:
        loop, writers = overlapping()
        await loop.handle([_RawEvent(0, 0), _RawEvent(1, 0)], loop.stream)
        loop.drained = True  # due at once
        await loop.handle([_RawEvent(0, 1)], loop.stream)
        while "txn 1@1 starts" not in writers.calls:  # the commits start, and wait
            await asyncio.sleep(0)
        # The flush is under way, its commits wait: the loop is free for the next batch.
        assert loop.committing is not None and not loop.committing.done()
        await loop.handle([_RawEvent(0, 2), _RawEvent(1, 1)], loop.stream)
        assert "send 0 0:2" not in writers.calls  # kept back: the open transaction is batch 1's
        assert writers.visible == []
        writers.gate.set()
        await loop.flush()
        assert writers.calls == [
            "send 0 0:0",
            "send 1 1:0",
            "send 0 0:1",
            "txn 0@2 starts",
            "txn 1@1 starts",
            "txn 0@2 done",
            "txn 1@1 done",
            "ack 0@0",
            "ack 1@0",
            "ack 0@1",
            # Sent after the first commits, committed with their own offsets.
            "send 0 0:2",
            "send 1 1:1",
            "txn 0@3 starts",
            "txn 0@3 done",
            "txn 1@2 starts",
            "txn 1@2 done",
            "ack 0@2",
            "ack 1@1",
        ]
        assert sorted(writers.visible) == [b"0:0", b"0:1", b"0:2", b"1:0", b"1:1"]

    asyncio.run(scenario())


def test_a_commit_failing_while_the_next_batch_is_processed_sends_and_acknowledges_nothing_after_it() -> None:
    async def scenario() -> None:
        loop, writers = overlapping()
        writers.failing = {1}
        loop.drained = True
        await loop.handle([_RawEvent(0, 0), _RawEvent(1, 0)], loop.stream)
        await loop.handle([_RawEvent(0, 1), _RawEvent(1, 1)], loop.stream)  # during the commits
        writers.gate.set()
        await commits_over(loop)
        with pytest.raises(RuntimeError, match="broker gone"):
            await loop.handle([_RawEvent(0, 2)], loop.stream)
        # Partition 0's first transaction committed; partition 1's aborted. Nothing of the batch
        # processed during the commits was sent, and no event at all was acknowledged: the
        # worker stops and its next owner replays both partitions from their committed offsets.
        assert writers.visible == [b"0:0"]
        assert writers.sent == {0: [], 1: []}
        assert not any(call.startswith("ack") for call in writers.calls)
        assert not any("0:1" in call or "1:1" in call for call in writers.calls)
        assert loop.committing is None and loop.deferred == []

    asyncio.run(scenario())


def test_a_partition_lost_during_a_commit_drops_what_was_processed_for_it_meanwhile() -> None:
    async def scenario() -> None:
        forgotten: list[int] = []
        loop, writers = overlapping()
        loop.lost = lambda partitions: forgotten.extend(partitions)  # type: ignore[method-assign]
        writers.fencing = {1}
        loop.drained = True
        await loop.handle([_RawEvent(0, 0), _RawEvent(1, 0)], loop.stream)
        await loop.handle([_RawEvent(0, 1), _RawEvent(1, 1)], loop.stream)
        writers.gate.set()
        await loop.flush()
        assert forgotten == [1]
        assert "send 1 1:1" not in writers.calls  # another worker owns partition 1 now
        assert sorted(writers.visible) == [b"0:0", b"0:1"]
        # Every event is acknowledged (faust waits for them), partition 1's without output here.
        assert sorted(c for c in writers.calls if c.startswith("ack")) == [
            "ack 0@0",
            "ack 0@1",
            "ack 1@0",
            "ack 1@1",
        ]
        assert loop.events == [] and loop.committing is None

    asyncio.run(scenario())


def test_a_failed_commit_after_traffic_stopped_is_due_so_the_timer_stops_the_worker() -> None:
    async def scenario() -> None:
        loop, writers = overlapping()
        writers.failing = {0}
        loop.drained = True
        await loop.handle([_RawEvent(0, 0)], loop.stream)
        assert not loop.events and not loop.due()  # commit running, nothing held
        writers.gate.set()
        await commits_over(loop)
        assert loop.due()
        with pytest.raises(RuntimeError, match="broker gone"):
            await loop.flush()

    asyncio.run(scenario())


def test_while_draining_a_flush_waits_for_its_commits() -> None:
    async def scenario() -> None:
        loop, writers = overlapping()
        writers.gate.set()
        loop.draining = 1
        await loop.handle([_RawEvent(0, 0)], loop.stream)
        assert loop.committing is None
        assert writers.calls[-1] == "ack 0@0"

    asyncio.run(scenario())
