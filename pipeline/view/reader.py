"""Keeping a :class:`~pipeline.view.store.ViewStore` live from the compacted topics.

The reader assigns itself every partition of ``rum.measures.rollup`` and
``rum.facets.index`` (no consumer group: every reader wants every record),
reads them from the beginning with ``isolation_level="read_committed"`` (the
workers write in transactions: records of an open or aborted transaction are
not results), applies each record to the store, and goes on reading what comes.

It is *caught up* once it has read, in every partition, up to the end offset
the partition had when the reader started (the last stable offset, under
read_committed). ``lag`` is the number of records between its position and
the latest end offsets, refreshed every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.consume import assign_topics, make_reader
from pipeline.settings import Settings
from pipeline.topics import FACETS, ROLLUPS
from pipeline.view.store import ViewStore
from pipeline.view.warm import Warmer

log = logging.getLogger(__name__)

#: Seconds of window building between two looks for records (and for queries to run).
WARM_SLICE_S = 0.005


@dataclass
class Progress:
    """How far the reader is: records applied, caught up or not, records behind."""

    records: int = 0
    caught_up: bool = False
    lag: int | None = None
    #: Monotonic time the reader caught up (None before).
    caught_up_at: float | None = None
    #: Whether the columns of every window are built (see :mod:`pipeline.view.warm`); goes back
    #: to False while windows changed by live records are built again.
    warm: bool = False
    #: Monotonic time the columns of every window were first built (None before).
    warm_at: float | None = None
    #: Monotonic time the days, hours and the edges of the rolling ranges (``last 1d`` ...) were
    #: first built (None before): from then on a rolling range ending now builds no window but
    #: those records changed since.
    rolling_at: float | None = None


class ViewReader:
    """Reads the rollup and facet topics into ``store``; ``run`` until cancelled."""

    def __init__(
        self,
        settings: Settings,
        store: ViewStore,
        *,
        refresh_s: float = 5.0,
        on_progress: Callable[[Progress], None] | None = None,
        warm: bool = True,
    ) -> None:
        self.settings = settings
        #: Builds window columns once caught up, between batches (None: queries build them).
        self.warmer = Warmer(store) if warm else None
        self.store = store
        self.refresh_s = refresh_s
        self.on_progress = on_progress
        self.progress = Progress()
        self.rollups_topic = settings.topic(ROLLUPS)
        self.facets_topic = settings.topic(FACETS)
        self._consumer: AIOKafkaConsumer | None = None
        self._targets: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        """Connect and assign every partition from the beginning."""
        consumer = make_reader(self.settings, isolation_level="read_committed", max_wait_ms=200)
        await consumer.start()
        self._consumer = consumer
        try:
            await assign_topics(consumer, [self.rollups_topic, self.facets_topic])
            self._targets = await consumer.end_offsets(list(consumer.assignment()))
        except BaseException:
            await consumer.stop()
            raise
        self._ends = dict(self._targets)
        await self._check_caught_up()

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self) -> None:
        """Apply records as they come, until cancelled (``start`` first)."""
        consumer = self._consumer
        assert consumer is not None, "start() the reader first"
        refreshed = time.monotonic()
        while True:
            # While there are windows to build, look for records without waiting for them.
            wait_ms = 0 if self.progress.caught_up and not self.progress.warm and self.warmer else 200
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=20_000)
            for tp, records in batch.items():
                apply = self.store.apply_rollup if tp.topic == self.rollups_topic else self.store.apply_facet
                for record in records:
                    apply(record.key, record.value)
                self.progress.records += len(records)
            now = time.monotonic()
            if not self.progress.caught_up or now - refreshed >= self.refresh_s:
                if self.progress.caught_up:
                    self._ends = await consumer.end_offsets(list(consumer.assignment()))
                    self.store.evict()
                    refreshed = now
                await self._check_caught_up()
            if self.progress.caught_up and self.warmer is not None:
                self._warm()
            if self.on_progress is not None:
                self.on_progress(self.progress)

    def _warm(self) -> None:
        """Build window columns for a slice of time (queries wait at most that long)."""
        assert self.warmer is not None
        if self.progress.warm and not self.warmer.due():
            return
        self.progress.warm = self.warmer.step(WARM_SLICE_S)
        if self.warmer.rolling and self.progress.rolling_at is None:
            self.progress.rolling_at = time.monotonic()
        if self.progress.warm and self.progress.warm_at is None:
            self.progress.warm_at = time.monotonic()
            log.info("view columns built: %d windows", self.warmer.built)

    async def _check_caught_up(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        positions = {tp: await consumer.position(tp) for tp in self._targets}
        # A transaction's commit marker takes an offset too: once every record before the
        # target is read, the position sits at or past the marker.
        behind = {tp: max(0, self._ends.get(tp, end) - positions[tp]) for tp, end in self._targets.items()}
        self.progress.lag = sum(behind.values())
        if not self.progress.caught_up and all(positions[tp] >= end for tp, end in self._targets.items()):
            self.progress.caught_up = True
            self.progress.caught_up_at = time.monotonic()
            self.caught_up.set()
            log.info("view caught up: %d records", self.progress.records)


async def load_view(
    settings: Settings,
    store: ViewStore,
    timeout: float,
    on_progress: Callable[[Progress], None] | None = None,
) -> Progress:
    """Read the topics into ``store`` until caught up (or ``timeout`` s), then stop: for one-shot queries."""
    # One query follows: it builds the windows it uses, and only those.
    reader = ViewReader(settings, store, on_progress=on_progress, warm=False)
    await reader.start()
    task = asyncio.ensure_future(reader.run())
    try:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader.caught_up.wait()), timeout)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await reader.stop()
    return reader.progress
