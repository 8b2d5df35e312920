"""The live view a serve process answers from: the store, its reader, the catalog and the limits."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from pipeline.monitors.config import load_monitors
from pipeline.monitors.runtime import MonitorRuntime
from pipeline.monitors.source import ViewSource
from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.settings import Settings
from pipeline.view.catalog import Catalog
from pipeline.view.reader import ViewReader
from pipeline.view.request import Limits
from pipeline.view.spill import SketchSpill
from pipeline.view.store import ViewStore

log = logging.getLogger("rum.serve")


class ViewService:
    """A store kept live by a reader; ``ready`` once the reader has caught up.

    ``monitors``, when given, evaluates the monitors on the store; it is started
    after the reader and stopped before it.
    """

    def __init__(
        self,
        store: ViewStore,
        catalog: Catalog,
        limits: Limits,
        reader: ViewReader | None,
        monitors: MonitorRuntime | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.limits = limits
        self.reader = reader
        self.monitors = monitors
        self._task: asyncio.Task[None] | None = None
        self._freeze: asyncio.Task[None] | None = None
        #: Why the reader stopped, when it did (the process is then not healthy).
        self.failure: str | None = None

    @classmethod
    def live(
        cls, settings: Settings, catalog: Catalog, limits: Limits, sketches_in_memory: int | None = None
    ) -> ViewService:
        """A service whose store is read from the topics of ``settings``.

        Past ``sketches_in_memory`` keys, sketches are kept in RocksDB under RUM_DATA_DIR/view.
        """
        spill = None
        if sketches_in_memory is not None:
            spill = SketchSpill(settings.worker.data_dir / "view", sketches_in_memory)
        store = ViewStore(retention_ms=limits.retention_ms, spill=spill)
        service = cls(store, catalog, limits, ViewReader(settings, store))
        path = settings.rollups.config or default_config_path()
        monitors = load_monitors(path, load_rollup_config(path))
        service.monitors = MonitorRuntime(
            settings, monitors, ViewSource(store, catalog), ready=lambda: service.ready
        )
        return service

    @property
    def ready(self) -> bool:
        """True once the view has caught up with the topics (always, without a reader)."""
        return self.reader is None or self.reader.progress.caught_up

    async def start(self) -> None:
        """Connect the reader and read in the background; start evaluating the monitors."""
        if self.reader is not None:
            await self.reader.start()
            self._task = asyncio.create_task(self.reader.run())
            self._task.add_done_callback(self._stopped)
            self._freeze = asyncio.create_task(self._freeze_when_caught_up())
        if self.monitors is not None:
            await self.monitors.start()

    async def _freeze_when_caught_up(self) -> None:
        """Exempt the view read so far from garbage collections (``gc.freeze``).

        The view's objects hold no reference cycles (they are freed by their
        reference counts when replaced); scanning millions of them in every full
        collection only delays queries.
        """
        assert self.reader is not None
        await self.reader.caught_up.wait()
        gc.collect()
        gc.freeze()

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failure = f"the view reader stopped: {task.exception()!r}"
            log.error(self.failure)

    async def stop(self) -> None:
        """Stop evaluating, stop reading and disconnect."""
        if self.monitors is not None:
            await self.monitors.stop()
        if self._freeze is not None:
            self._freeze.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.reader is not None:
            await self.reader.stop()
        if self.store.spill is not None:
            self.store.spill.close()
