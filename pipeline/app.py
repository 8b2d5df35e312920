"""The faust application: `create_app(settings)` and the module-level `app`.

`app` is created on first access (PEP 562), so importing this module reads no
environment variables; the faust CLI (`faust -A pipeline.app:app worker`) and
`rum-pipeline worker` both end up here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.types import TP
from mode.supervisors import CrashingSupervisor

from pipeline.clock import now_ms
from pipeline.kafka_auth import broker_credentials
from pipeline.metrics import FaustProbe, WorkerMetrics
from pipeline.outputs import PartitionWriters
from pipeline.partitioning import KeyPartitioner
from pipeline.process import Processor
from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.rollups.stage import RollupStage
from pipeline.settings import Settings, load_settings
from pipeline.topics import BAD, ENRICHED, LATE, PARTIALS, RAW
from pipeline.worker.faust_private import BatchDeliveryTransport, QuietMonitor, read_to_end
from pipeline.worker.loop import BatchLoop
from pipeline.worker.raw_schema import RawBytes
from pipeline.worker.tasks import PartitionTasks

log = logging.getLogger(__name__)


#: Most partials the merge agent takes at once. A rollup flush sends every changed partial of
#: every raw partition in one burst, and each batch merges and upserts each key it touches:
#: taken 500 at a time, a key's partials from the raw partitions fell into several batches
#: and it was upserted about once per partial instead of once per burst.
MERGE_BATCH = 10_000


class WorkerApp(faust.App):
    """faust's app, making each event with the event class looked up once.

    faust's ``App.create_event`` reads ``conf.Event`` for every message, and
    faust's settings object records every attribute read: a few µs an event
    on the worker's hottest path.
    """

    _event_class: Any = None

    def create_event(self, key: Any, value: Any, headers: Any, message: Any) -> Any:
        """A new event of ``conf.Event`` (read at the first call)."""
        event_class = self._event_class
        if event_class is None:
            event_class = self._event_class = self.conf.Event
        return event_class(self, key, value, headers, message)


def create_app(settings: Settings, metrics: WorkerMetrics | None = None) -> faust.App:
    """A faust app with the enrichment agent, configured from ``settings``.

    ``metrics`` (made here when not given) reads the app's counters; its HTTP
    server starts with the app unless the caller started it before.
    """
    app = WorkerApp(
        settings.kafka.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        broker_credentials=broker_credentials(settings),
        datadir=str(settings.worker.data_dir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        # Raw actions up to the topic's 8 MiB limit must be readable and their
        # bad rows writable; the size limit itself is enforced by the validator.
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
        producer_acks=-1,
        # Kafka's default placement of keyed records, with recent keys' hashes kept (upserts).
        producer_partitioner=KeyPartitioner(),
        # faust's own web server serves nothing the pipeline uses (metrics and health have
        # their own server): off unless RUM_WEB_PORT asks for it.
        web_enabled=settings.worker.web_port > 0,
        web_port=settings.worker.web_port or 6066,
        web_host="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka.session_timeout,
        broker_heartbeat_interval=settings.kafka.session_timeout / 10,
        # faust's monitor without its per-event counting (only faust's web views read it).
        Monitor=QuietMonitor,
    )
    # Before any topic is declared: the conductor and consumer come from here.
    app.transport = BatchDeliveryTransport(app.conf.broker_consumer, app)
    raw = app.topic(settings.topic(RAW), schema=RawBytes())
    processor = Processor(settings)

    stage = _rollup_stage(app, settings)
    metrics = metrics or WorkerMetrics(settings)
    metrics.bind(processor, stage, FaustProbe(app, settings.topic(RAW), stage))

    @app.task
    async def start_enrichments() -> None:
        """Background work of the enrichments (the GeoIP file watch), on the loop that enriches."""
        await processor.start()

    @app.task
    async def serve_metrics() -> None:
        """Give the metrics server this loop (for lag and readiness); start it if nobody did."""
        metrics.attach_loop(asyncio.get_running_loop())
        metrics.serve()

    raw_name = settings.topic(RAW)

    def raw_caught_up() -> bool:
        consumer = app.consumer
        return all(read_to_end(consumer, tp) for tp in consumer.assignment() if tp.topic == raw_name)

    writers = PartitionWriters(settings, raw_name, settings.kafka.app_id)
    grace = stage.engine.grace_ms // 1000 if stage is not None else 60
    tasks = PartitionTasks(settings, int((settings.worker.dedupe_window or 86400 + grace) * 1000))
    loop = BatchLoop(
        processor,
        stage,
        writers,
        tasks,
        {"enriched": settings.topic(ENRICHED), "bad": settings.topic(BAD), "late": settings.topic(LATE)},
        settings.rollups.flush_interval,
        settings.worker.batch_size,
        commit_consumer=None if writers.exactly_once else (lambda: app.consumer.commit()),
        caught_up=raw_caught_up,
        observe=metrics.batch_seconds.observe,
    )
    app.transport.batch_loop = loop
    metrics.bind_worker(tasks, writers)

    # An agent that fails must take the worker down: faust's default supervisor
    # would restart it past the failed batch, whose events were never
    # acknowledged and would then not be read again until the next restart.
    # Crashing hands the partitions to another worker, which replays them.
    @app.agent(raw, name="enrich", supervisor_strategy=CrashingSupervisor)
    async def enrich(stream: Any) -> None:  # a faust.Stream; StreamT lacks noack_take
        """raw -> enriched | bad row (and rollup state), committed per partition, in batches."""
        async for events in stream.noack_take(
            settings.worker.batch_size, within=settings.worker.batch_within
        ):
            await loop.handle(events, stream)

    @app.timer(interval=max(0.05, settings.rollups.flush_interval / 2))
    async def commit_held() -> None:
        """Commit held outputs (and acknowledge their events) when traffic pauses."""
        if loop.due():
            try:
                await loop.flush()
            except Exception as exc:
                # Like the agents: a failed commit must stop the worker (its events stay
                # unacknowledged and are replayed elsewhere), not leave a timer that keeps failing.
                await app.crash(exc)

    async def partitions_moved(*_args: Any, **_kwargs: Any) -> None:
        if stage is not None:
            stage.rebalanced()

    app.on_partitions_revoked.connect(partitions_moved)
    app.on_partitions_assigned.connect(partitions_moved)

    @app.on_before_shutdown.connect
    async def close_writers(*_args: Any, **_kwargs: Any) -> None:
        await loop.close()  # commits still running finish before their producers stop
        await writers.close()
        await tasks.close()
        await processor.stop()

    @app.timer(interval=max(1.0, settings.rollups.flush_interval))
    async def advance_quiet_partitions() -> None:
        """Release partitions gone elsewhere; let quiet ones stop holding windows open.

        Rollup config ``idle`` says when a raw partition without traffic counts as quiet.
        Here rather than in a rebalance callback: the lock may be held by a batch that is
        restoring state, and a callback waiting for it would hold up the group's rejoin.
        """
        try:
            async with loop.lock:
                if app.rebalancing:
                    return  # ownership is changing: only an owner may write a partition's changelog
                await loop.settle()  # before anything is written in the partitions' transactions
                consumer = app.consumer
                owned = {tp.partition for tp in consumer.assignment() if tp.topic == raw_name}
                await writers.release(writers.partitions - owned)
                tasks.release(owned)
                if stage is None:
                    return
                stage.release(owned)
                if loop.events:
                    await loop.flush_locked()  # what idle partitions write commits on its own
                await writers.ensure((p, None) for p in owned)

                def caught_up(partition: int) -> bool:
                    return read_to_end(consumer, TP(raw_name, partition))

                await stage.advance_idle(owned, now_ms(), writers, caught_up)
        except Exception as exc:
            await app.crash(exc)

    if stage is not None:
        partials = app.topic(settings.topic(PARTIALS), key_serializer="raw", value_serializer="raw")

        @app.agent(partials, name="merge", supervisor_strategy=CrashingSupervisor)
        async def merge(stream: Any) -> None:
            """Partials -> facet-index and rollup upserts."""
            batch = max(settings.worker.batch_size, MERGE_BATCH)
            async for events in stream.take_events(batch, within=settings.worker.batch_within):
                await stage.merge(events)

    return app


def _rollup_stage(app: faust.App, settings: Settings) -> RollupStage | None:
    """The rollup stage when enabled, with its config validated now (start-up)."""
    if not settings.rollups.enabled:
        return None
    path = settings.rollups.config or default_config_path()
    partials = settings.topic(PARTIALS)

    def owned_partials() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == partials}

    return RollupStage(settings, load_rollup_config(path), lambda: app.producer, owned_partials)


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    if name == "app":
        global _app
        if _app is None:
            _app = create_app(load_settings())
        return _app
    raise AttributeError(name)
