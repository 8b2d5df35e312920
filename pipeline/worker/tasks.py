"""One task per raw partition: the ids it has seen, and the offset its last transaction committed.

A :class:`PartitionTask` is made when its partition is first processed under
a consumer generation, from the partition's changelog (topic
``rum.internal.dedupe-state``, same partition number), read ``read_committed``
after the partition's transactional producer fenced any earlier owner. The
task then holds what the previous owner committed last:

- ``next_offset``, the raw offset to resume from. The consumer may have fetched
  its position before the previous owner's last commit landed; events below
  ``next_offset`` were processed and committed already and are skipped whole
  (no output, no aggregation);
- ``seen``, the action ids of the deduplication window (:mod:`.dedupe`).

At each commit, :meth:`PartitionTasks.changes` gives the task's changelog
records, written in the same transaction as its outputs and offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from pipeline.outputs import Outputs
from pipeline.rollups.stage import TopicReader
from pipeline.settings import Settings
from pipeline.topics import DEDUPE
from pipeline.worker.dedupe import PREFIX, SeenIds

log = logging.getLogger(__name__)

OFFSET_KEY = b"offset"


class PartitionTask:
    """What a worker keeps of one raw partition besides its rollup state."""

    def __init__(self, partition: int, generation: int, window_ms: int) -> None:
        self.partition = partition
        self.generation = generation
        self.seen = SeenIds(window_ms)
        #: The first raw offset not covered by the last commit (0: nothing committed).
        self.next_offset = 0
        #: ``next_offset`` as last written to the changelog.
        self.written_offset = 0
        self.skipped = 0

    def take(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (restore)."""
        if key == OFFSET_KEY:
            if value is not None:
                self.next_offset = self.written_offset = int(value)
        elif key.startswith(PREFIX):
            self.seen.restore(key, value)

    def fresh(self, offset: int) -> bool:
        """False for an event the last commit covered already (skip it whole)."""
        if offset < self.next_offset:
            self.skipped += 1
            return False
        return True


class PartitionTasks:
    """The tasks of the raw partitions this worker processes."""

    def __init__(self, settings: Settings, window_ms: int) -> None:
        self.topic = settings.topic(DEDUPE)
        self.window_ms = window_ms
        self.reader = TopicReader(settings)
        self.tasks: dict[int, PartitionTask] = {}
        #: Counts of tasks already gone, so that the totals never go down.
        self._gone = {"duplicates": 0, "unchecked": 0, "skipped": 0}

    def __getitem__(self, partition: int) -> PartitionTask:
        return self.tasks[partition]

    def _stale(self, partitions: Iterable[tuple[int, int]]) -> dict[int, int]:
        """The (partition, generation) pairs whose task is missing or made for another generation."""
        return {p: g for p, g in partitions if (task := self.tasks.get(p)) is None or task.generation != g}

    def ready(self, partitions: Iterable[tuple[int, int]]) -> bool:
        """True when every (partition, generation) has its task made for that generation."""
        return not self._stale(partitions)

    async def prepare(self, partitions: Iterable[tuple[int, int]]) -> None:
        """Make the task of every (partition, generation) not made for that generation, from its changelog."""
        stale = self._stale(partitions)
        if not stale:
            return
        started = time.monotonic()
        made = {p: PartitionTask(p, g, self.window_ms) for p, g in stale.items()}

        def take(partition: int, chunk: list[tuple[bytes, bytes | None]]) -> None:
            task = made[partition]
            for key, value in chunk:
                task.take(key, value)

        await self.reader.read_each(self.topic, made, take)
        for partition, task in sorted(made.items()):
            self.forget(partition)
            self.tasks[partition] = task
            log.info(
                "partition %d resumes at offset %d with %d action ids seen, read in %.2f s",
                partition,
                task.next_offset,
                len(task.seen),
                time.monotonic() - started,
            )

    def changes(self, partition: int, next_offset: int) -> Outputs:
        """The task's changelog records for a commit that moves it to ``next_offset``."""
        outputs = Outputs()
        task = self.tasks.get(partition)
        if task is None:
            return outputs
        for key, value in task.seen.changes():
            outputs.add(self.topic, partition, key, value)
        task.next_offset = max(task.next_offset, next_offset)
        if task.next_offset != task.written_offset:
            outputs.add(self.topic, partition, OFFSET_KEY, b"%d" % task.next_offset)
            task.written_offset = task.next_offset
        return outputs

    def forget(self, partition: int) -> None:
        """Drop a partition's task (moved or lost: its changelog has what was committed)."""
        task = self.tasks.pop(partition, None)
        if task is not None:
            self._gone["duplicates"] += task.seen.counts["duplicates"]
            self._gone["unchecked"] += task.seen.counts["unchecked"]
            self._gone["skipped"] += task.skipped

    def release(self, owned: set[int]) -> None:
        """Forget the tasks of partitions not owned here any more."""
        for partition in sorted(set(self.tasks) - owned):
            self.forget(partition)

    def counts(self) -> dict[str, int]:
        """Duplicates dropped, actions too old to check, and events skipped as committed already."""
        totals = dict(self._gone)
        for task in self.tasks.values():
            totals["duplicates"] += task.seen.counts["duplicates"]
            totals["unchecked"] += task.seen.counts["unchecked"]
            totals["skipped"] += task.skipped
        return totals

    def nbytes(self) -> int:
        """Approximate memory of the seen ids of every task."""
        return sum(task.seen.nbytes() for task in self.tasks.values())

    async def close(self) -> None:
        """Release the changelog reader."""
        await self.reader.close()
