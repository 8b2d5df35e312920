"""Partition tasks: what a commit writes to the dedupe changelog, and a new owner restoring it.

The restore reads the changelog from the real broker, as a worker does after a rebalance.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pipeline.produce import make_producer
from pipeline.settings import Settings, load_settings
from pipeline.topics import DEDUPE
from pipeline.worker.dedupe import HOUR_MS
from pipeline.worker.tasks import OFFSET_KEY, PartitionTask, PartitionTasks
from tests.factory import raw_action
from tests.kafka_helpers import isolated_env, new_topic, settings_from

T0 = 1_764_340_000_000
DAY_MS = 24 * HOUR_MS


def action(ident: str, date: int = T0) -> dict[str, Any]:
    """The typical action with the id ``ident``."""
    return raw_action(date=date, action={"id": ident, "type": "custom", "target": {"name": "checkout"}})


def records(tasks: PartitionTasks, partition: int, next_offset: int) -> list[tuple[bytes, bytes | None]]:
    """The changelog records a commit writes, as (key, value) in order."""
    outputs = tasks.changes(partition, next_offset)
    assert not outputs.keyed  # every changelog record goes to the task's own partition
    written: list[tuple[bytes, bytes | None]] = []

    class Recorder:
        async def send(self, topic: str, key: bytes, value: bytes | None, partition_: int, *_: Any) -> None:
            assert (topic, partition_) == (tasks.topic, partition)
            written.append((key, value))

    asyncio.run(outputs.send(Recorder()))
    return written


def test_a_task_skips_what_the_last_commit_covered() -> None:
    task = PartitionTask(3, generation=1, window_ms=DAY_MS)
    assert task.fresh(0)  # nothing committed yet
    task.take(OFFSET_KEY, b"120")
    task.take(OFFSET_KEY, None)  # a tombstone of the offset key changes nothing
    assert (task.next_offset, task.written_offset) == (120, 120)
    assert [task.fresh(o) for o in (118, 119, 120, 121)] == [False, False, True, True]
    assert task.skipped == 2


def test_a_commit_writes_new_ids_and_the_offset_once() -> None:
    tasks = PartitionTasks(load_settings({}), DAY_MS)
    tasks.tasks[0] = task = PartitionTask(0, 1, DAY_MS)
    assert not task.seen.seen(action("a")) and not task.seen.seen(action("b"))
    first = records(tasks, 0, next_offset=2)
    assert first[-1] == (OFFSET_KEY, b"2")
    assert len(first) > 1  # the ids, then the offset
    assert records(tasks, 0, next_offset=2) == []  # nothing new: nothing written
    assert records(tasks, 0, next_offset=1) == []  # the offset never goes back
    assert records(tasks, 5, next_offset=9) == []  # no task for that partition


def test_counts_survive_forgotten_tasks() -> None:
    tasks = PartitionTasks(load_settings({}), DAY_MS)
    for partition in (0, 1):
        tasks.tasks[partition] = task = PartitionTask(partition, 1, DAY_MS)
        task.seen.seen(action("a"))
        task.seen.seen(action("a"))  # a copy
        task.take(OFFSET_KEY, b"5")
        task.fresh(1)
    assert tasks.counts() == {"duplicates": 2, "unchecked": 0, "skipped": 2}
    tasks.release({1})
    assert set(tasks.tasks) == {1}
    assert tasks.counts() == {"duplicates": 2, "unchecked": 0, "skipped": 2}


async def _write(
    settings: Settings, topic: str, partition: int, items: list[tuple[bytes, bytes | None]]
) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def _restore(settings: Settings, partitions: list[tuple[int, int]]) -> PartitionTasks:
    tasks = PartitionTasks(settings, DAY_MS)
    try:
        await tasks.prepare(partitions)
    finally:
        await tasks.close()
    return tasks


@pytest.mark.kafka
def test_a_new_owner_restores_the_offset_and_the_ids_seen(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    topic = asyncio.run(new_topic(settings, DEDUPE, partitions=2))
    before = PartitionTasks(settings, DAY_MS)
    before.tasks[1] = task = PartitionTask(1, 1, DAY_MS)
    for ident in ("a", "b", "c"):
        task.seen.seen(action(ident))
    asyncio.run(_write(settings, topic, 1, records(before, 1, next_offset=42)))

    after = asyncio.run(_restore(settings, [(0, 7), (1, 7)]))
    assert after[0].next_offset == 0 and len(after[0].seen) == 0  # an empty partition: a fresh start
    restored = after[1]
    assert restored.generation == 7 and restored.next_offset == 42
    assert restored.seen.seen(action("b"))  # a copy of an action the previous owner saw
    assert not restored.seen.seen(action("d"))
    assert not restored.fresh(41) and restored.fresh(42)
