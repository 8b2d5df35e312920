"""Exactly once on the real broker while a flush's transactions commit behind the next batch.

The batch loop (exactly once) processes the next batches while the last
flush's per-partition transactions commit. Here one of those transactions
fails for real — a record larger than the topic accepts makes the broker
reject it, so the transaction aborts — while the next batch is being
processed. Nothing of the aborted transaction nor of the batch processed
meanwhile may become visible, no event may be acknowledged, and a new owner
replaying the partitions from what was committed must produce every action
exactly once.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.consume import group_offsets
from pipeline.outputs import Outputs, PartitionWriters
from pipeline.process import Processor
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, LATE, RAW
from pipeline.worker.loop import BatchLoop
from pipeline.worker.tasks import PartitionTasks
from tests.chaos_helpers import coverage, produce, read_all, read_all_async
from tests.kafka_helpers import CLI, isolated_env, settings_from

pytestmark = pytest.mark.kafka

#: Larger than the enriched topic's max.message.bytes (8 MiB), smaller than a request may be.
TOO_LARGE = 9 * 1024 * 1024


class _Message:
    """What the loop reads of a faust message."""

    def __init__(self, record: Any) -> None:
        self.topic = record.topic
        self.partition = record.partition
        self.offset = record.offset
        self.key = record.key
        self.value = record.value
        self.generation_id = 1


class _Event:
    def __init__(self, record: Any) -> None:
        self.message = _Message(record)


class _Stream:
    """Stands in for faust's stream: writes down the acknowledged (partition, offset)s."""

    def __init__(self) -> None:
        self.acked: list[tuple[int, int]] = []

    async def ack(self, event: _Event) -> None:
        self.acked.append((event.message.partition, event.message.offset))


class _FailingOnce(PartitionWriters):
    """Partition ``failing``'s first commit waits for ``gate``, then carries a record the broker rejects."""

    def __init__(self, settings: Settings, failing: int) -> None:
        super().__init__(settings, settings.topic(RAW), settings.kafka.app_id)
        self.failing = failing
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.settings_ = settings

    async def commit(self, partition: int, next_offset: int | None) -> None:
        if partition == self.failing and not self.gate.is_set():
            self.started.set()
            await self.gate.wait()
            oversized = Outputs()
            oversized.add(self.settings_.topic(ENRICHED), partition, b"k", b"x" * TOO_LARGE)
            await self.send(partition, oversized)
        await super().commit(partition, next_offset)


def _loop(settings: Settings, writers: PartitionWriters, tasks: PartitionTasks) -> BatchLoop:
    topics = {
        name: settings.topic(topic) for name, topic in (("enriched", ENRICHED), ("bad", BAD), ("late", LATE))
    }
    loop = BatchLoop(Processor(settings), None, writers, tasks, topics, interval=3600, batch_size=500)
    loop.stream = _Stream()
    return loop


async def _records(settings: Settings, start: dict[int, int] | None = None) -> list[Any]:
    """The raw topic's records, read committed, from ``start`` (partition -> offset) or the beginning."""
    return await read_all_async(settings, [settings.topic(RAW)], start)


async def _crashing_owner(settings: Settings, records: list[Any]) -> tuple[_Stream, BaseException | None]:
    """Process half the records, flush, process the rest during the commits; partition 1's fails."""
    half = _halves(records)
    first = [r for r in records if r.offset < half[r.partition]]
    second = [r for r in records if r.offset >= half[r.partition]]
    writers = _FailingOnce(settings, failing=1)
    tasks = PartitionTasks(settings, 86_400_000)
    loop = _loop(settings, writers, tasks)
    failure: BaseException | None = None
    try:
        loop.drained = True  # the end of a backlog: the flush is due right after this batch
        await loop.handle([_Event(r) for r in first], loop.stream)
        assert loop.committing is not None, "the flush should commit in the background"
        await writers.started.wait()
        await loop.handle([_Event(r) for r in second], loop.stream)  # while partition 1's commit waits
        assert loop.deferred, "outputs of the second batch should be kept back"
        writers.gate.set()
        try:
            await loop.flush()
        except Exception as exc:
            failure = exc
    finally:
        await loop.close()
        await writers.close()
        await tasks.close()
    return loop.stream, failure


async def _new_owner(settings: Settings) -> None:
    """Take the partitions over and process everything from the committed offsets."""
    raw = settings.topic(RAW)
    committed = {
        tp.partition: o
        for tp, o in (await group_offsets(settings, settings.kafka.app_id)).items()
        if tp.topic == raw
    }
    records = await _records(settings, committed)
    writers = PartitionWriters(settings, raw, settings.kafka.app_id)
    tasks = PartitionTasks(settings, 86_400_000)
    loop = _loop(settings, writers, tasks)
    try:
        for start in range(0, len(records), 150):
            await loop.handle([_Event(r) for r in records[start : start + 150]], loop.stream)
        await loop.flush()
    finally:
        await writers.close()
        await tasks.close()


def test_a_commit_failing_while_the_next_batch_is_processed_loses_and_repeats_nothing(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, RUM_PARTITIONS="2", RUM_ROLLUPS="false")
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    settings = settings_from(env)
    sent = produce(env, 400, seed=11)
    records = asyncio.run(_records(settings))
    assert len(records) == len(sent)
    assert {r.partition for r in records} == {0, 1}

    stream, failure = asyncio.run(_crashing_owner(settings, records))
    assert failure is not None, "partition 1's transaction should have failed"
    assert stream.acked == []  # the worker stops with nothing acknowledged
    # Only partition 0's first transaction committed: the first half of its offsets, nothing else.
    half = _halves(records)
    assert sorted(_sources(settings)) == [(0, offset) for offset in range(half[0])]
    assert _committed(settings) == {0: half[0]}

    asyncio.run(_new_owner(settings))
    found = coverage(settings)
    assert not found.problems(), found.problems()
    assert found.enriched + found.bad == found.raw == len(sent)


def _halves(records: list[Any]) -> dict[int, int]:
    """Per partition: the offset that splits its records in two."""
    counts: dict[int, int] = {}
    for record in records:
        counts[record.partition] = counts.get(record.partition, 0) + 1
    return {partition: count // 2 for partition, count in counts.items()}


def _sources(settings: Settings) -> list[tuple[int, int]]:
    """The raw (partition, offset) of every enriched action and bad row a read-committed reader sees."""
    found = []
    for record in read_all(settings, settings.topic(ENRICHED)):
        source = orjson.loads(record.value)["pipeline"]["source"]
        found.append((source["partition"], source["offset"]))
    for record in read_all(settings, settings.topic(BAD)):
        source = orjson.loads(record.value)["source"]
        found.append((source["partition"], source["offset"]))
    return found


def _committed(settings: Settings) -> dict[int, int]:
    raw = settings.topic(RAW)
    found = asyncio.run(group_offsets(settings, settings.kafka.app_id))
    return {tp.partition: offset for tp, offset in found.items() if tp.topic == raw}
