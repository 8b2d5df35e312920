"""A producer and writers that record what the rollup stage writes, for tests without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pipeline.rollups.engine import PartitionState, RollupEngine


def restore(
    engine: RollupEngine, partition: int, records: Iterable[tuple[bytes, bytes | None]]
) -> PartitionState:
    """``partition`` restored in ``engine`` from changelog records read all at once."""
    restoring = engine.restoring(partition)
    restoring.add(records)
    return restoring.finish()


class FakeProducer:
    """Records every send in order; futures resolve at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bytes, bytes | None]] = []

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int, *_: Any) -> Any:
        self.sent.append((topic, partition, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class PlainWriters:
    """Writes each partition's outputs through one producer, at once (at least once)."""

    exactly_once = False

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.commits: list[int] = []

    async def send(self, partition: int, outputs: Any) -> None:
        await asyncio.gather(*await outputs.send(self.producer))

    async def commit(self, partition: int, next_offset: int | None) -> None:
        self.commits.append(partition)
