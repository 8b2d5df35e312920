"""Prometheus metrics of a worker, served with ``/healthz`` and ``/ready`` on the metrics port.

Nothing here runs per event. The processor, the enrichments and the rollup
stage keep plain integer counters (``counts``, ``stats()``), which a custom
collector turns into metric families when Prometheus scrapes; the worker
itself only observes the batch-latency histogram, once per batch.

Consumer lag and readiness come from the faust consumer, which belongs to the
worker's event loop: the HTTP thread asks the loop for them (with a timeout)
instead of reading the consumer's structures from another thread.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, Info, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pipeline import PROCESSOR_NAME, __version__
from pipeline.enrich.registry import metric_specs
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, FACETS, LATE, PARTIALS, RAW, ROLLUPS
from pipeline.worker.faust_private import committed_position

log = logging.getLogger(__name__)

BAD_KINDS = ("parse", "schema", "size", "enrichment")
#: From a 500-action batch on a quiet worker (~10 ms) to a slow restore.
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: How long a scrape waits for the event loop to answer before giving up.
LOOP_TIMEOUT = 2.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the worker is ready, and if not, why."""

    ready: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Records of an assigned partition not yet committed: high watermark minus committed offset."""

    topic: str
    partition: int
    lag: int


class WorkerProbe(Protocol):
    """What only the event loop can tell: consumer lag and readiness (called on the loop)."""

    def lags(self) -> list[PartitionLag]:
        """Lag of every assigned partition whose lag is known."""
        ...

    def readiness(self) -> Readiness:
        """Ready once partitions are assigned and their rollup state is restored."""
        ...


class Sources(Protocol):
    """The counters the collector reads: a Processor's ``counts`` and ``enrichments``."""

    counts: dict[str, int]
    enrichments: list[Any]


class LoopBridge:
    """Runs a function on an event loop from another thread and waits for its result."""

    def __init__(self, loop: Any, timeout: float = LOOP_TIMEOUT) -> None:
        self.loop = loop
        self.timeout = timeout

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on the loop; TimeoutError if the loop does not get to it in time."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the event loop did not answer within {self.timeout} s") from None


class WorkerMetrics:
    """Every metric of one worker, in a registry of its own (two workers in one process stay apart)."""

    def __init__(self, settings: Settings, *, process_metrics: bool = True) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.batch_seconds = Histogram(
            "rum_batch_duration_seconds",
            "Time from receiving a batch of raw actions to Kafka acknowledging all of its outputs.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        Info(
            "rum_worker", "The worker: version, consumer group, host and process id.", registry=self.registry
        ).info(
            {
                "version": __version__,
                "processor": PROCESSOR_NAME,
                "app_id": settings.kafka.app_id,
                "hostname": socket.gethostname(),
                "pid": str(os.getpid()),
            }
        )
        self.topics = {
            name: settings.topic(name) for name in (RAW, ENRICHED, BAD, LATE, FACETS, ROLLUPS, PARTIALS)
        }
        self.processor: Sources | None = None
        self.tasks: Any = None
        self.writers: Any = None
        self.stage: Any = None
        self.probe: WorkerProbe | None = None
        self.bridge: LoopBridge | None = None
        self.server: MetricsServer | None = None
        self.registry.register(_PipelineCollector(self))

    def bind_worker(self, tasks: Any, writers: Any) -> None:
        """Read deduplication and transaction counters from the worker's partition tasks and writers."""
        self.tasks, self.writers = tasks, writers

    def bind(self, processor: Sources, stage: Any = None, probe: WorkerProbe | None = None) -> None:
        """Read counters from ``processor`` and the rollup ``stage``; ask ``probe`` for lag and readiness."""
        self.processor, self.stage, self.probe = processor, stage, probe

    def attach_loop(self, loop: Any) -> None:
        """The worker's event loop, on which the probe is called."""
        self.bridge = LoopBridge(loop)

    def on_loop(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on the worker's loop; RuntimeError when there is no running loop to ask."""
        if self.bridge is None:
            raise RuntimeError("the worker has not started yet")
        return self.bridge.call(fn)

    def readiness(self) -> Readiness:
        """Readiness as the probe sees it on the loop; not ready while starting or when the loop is stuck."""
        if self.probe is None or self.bridge is None:
            return Readiness(False, "starting")
        try:
            return self.on_loop(self.probe.readiness)
        except TimeoutError as exc:
            return Readiness(False, str(exc))
        except Exception as exc:  # the loop is closed (stopping), or the consumer is changing
            return Readiness(False, f"cannot tell: {exc}")

    def lags(self) -> list[PartitionLag]:
        """Consumer lag per assigned partition (empty when the loop cannot answer)."""
        if self.probe is None or self.bridge is None:
            return []
        try:
            return self.on_loop(self.probe.lags)
        except Exception as exc:  # a scrape must not fail for want of lag figures
            log.debug("consumer lag unavailable: %s", exc)
            return []

    def serve(self) -> int | None:
        """Start the HTTP server (once) unless ``metrics_port`` is 0; return the port it listens on."""
        if self.settings.worker.metrics_port == 0:
            return None
        if self.server is None:
            server = MetricsServer(self.registry, self.readiness)
            server.start(self.settings.worker.metrics_host, self.settings.worker.metrics_port)
            self.server = server
        return self.server.port

    def close(self) -> None:
        """Stop the HTTP server."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class _PipelineCollector(Collector):
    """Reads the pipeline's own counters at scrape time."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        topics = m.topics
        events_in = _counter("rum_events_in", "Records read, per topic.", ["topic"])
        events_out = _counter("rum_events_out", "Records produced, per topic.", ["topic"])
        processor = m.processor
        if processor is not None:
            counts = dict(processor.counts)
            bad = {kind: counts.get(kind, 0) for kind in BAD_KINDS}
            enriched = counts.get("enriched", 0)
            duplicates = counts.get("duplicates", 0)
            events_in.add_metric([topics[RAW]], enriched + duplicates + sum(bad.values()))
            events_out.add_metric([topics[ENRICHED]], enriched)
            events_out.add_metric([topics[BAD]], sum(bad.values()))
            bad_rows = _counter("rum_bad_rows", "Bad rows produced, per failure kind.", ["kind"])
            for kind, n in bad.items():
                bad_rows.add_metric([kind], n)
            yield bad_rows
            yield CounterMetricFamily(
                "rum_enrichment_warnings",
                "Warnings added to enriched actions.",
                value=counts.get("warnings", 0),
            )
            yield CounterMetricFamily(
                "rum_duplicate_actions",
                "Actions dropped before enrichment as copies of one seen before (same application, "
                "session and action id within the deduplication window).",
                value=duplicates,
            )
            yield from _enrichment_metrics(processor.enrichments)
        if m.tasks is not None:
            yield GaugeMetricFamily(
                "rum_dedupe_ids",
                "Action ids remembered for deduplication, over the raw partitions held here.",
                value=sum(len(task.seen) for task in list(m.tasks.tasks.values())),
            )
            yield GaugeMetricFamily(
                "rum_dedupe_bytes", "Approximate memory of the remembered action ids.", value=m.tasks.nbytes()
            )
            task_counts = m.tasks.counts()
            yield CounterMetricFamily(
                "rum_dedupe_unchecked",
                "Actions with an id but dated before the deduplication window: not checked for copies.",
                value=task_counts["unchecked"],
            )
            yield CounterMetricFamily(
                "rum_committed_skipped",
                "Events skipped whole on a partition's take-over: its last transaction covered them already.",
                value=task_counts["skipped"],
            )
        if m.writers is not None:
            txn = _counter(
                "rum_transactions",
                "Per-partition transactions: committed, fenced (partition lost to another worker), aborted.",
                ["outcome"],
            )
            for outcome, n in dict(m.writers.counts).items():
                txn.add_metric([outcome], n)
            yield txn
        stage = m.stage
        if stage is not None:
            sc = dict(stage.counts)
            events_in.add_metric([topics[PARTIALS]], sc.get("partials_in", 0))
            events_out.add_metric([topics[LATE]], sc.get("late", 0))
            events_out.add_metric([topics[FACETS]], sc.get("facets", 0))
            events_out.add_metric([topics[ROLLUPS]], sc.get("rollups", 0))
            events_out.add_metric([topics[PARTIALS]], sc.get("partials", 0))
            yield CounterMetricFamily(
                "rum_late_actions",
                "Actions routed to the late topic (too late for a rollup window).",
                value=sc.get("late", 0),
            )
            engine = dict(stage.engine.counts)
            missed = _counter(
                "rum_rollup_missed_windows",
                "Rollup windows an action missed: closed already (late).",
                ["reason"],
            )
            missed.add_metric(["late"], engine.get("late", 0))
            yield missed
            yield CounterMetricFamily(
                "rum_rollup_replayed",
                "Actions read again after a crash or rebalance and skipped: already in the restored state.",
                value=engine.get("replayed", 0),
            )
            spill = stage.spill
            entries = GaugeMetricFamily(
                "rum_rollup_state_entries",
                "Rollup state entries (partials, merged rollups) held in memory or spilled to RocksDB.",
                labels=["where"],
            )
            in_memory = spill.in_memory()
            entries.add_metric(["memory"], in_memory)
            entries.add_metric(["spilled"], sum(len(m) for m in list(spill.maps)) - in_memory)
            yield entries
            moved = _counter(
                "rum_rollup_state_spill", "Rollup state entries written to or read back from RocksDB.", ["op"]
            )
            for op, n in dict(spill.counts).items():
                moved.add_metric([op], n)
            yield moved
        yield events_in
        yield events_out
        if m.probe is not None:
            lag = GaugeMetricFamily(
                "rum_consumer_lag",
                "Records not yet committed per assigned partition: high watermark minus committed offset "
                "(minus the read position until the group's first commit). On topics written in "
                "transactions (the rollup partials), each commit marker after the last record counts one.",
                labels=["topic", "partition"],
            )
            for item in m.lags():
                lag.add_metric([item.topic, str(item.partition)], item.lag)
            yield lag
            yield GaugeMetricFamily(
                "rum_ready",
                "1 when the worker answers /ready with 200, else 0.",
                value=int(m.readiness().ready),
            )


def _enrichment_metrics(enrichments: Iterable[Any]) -> Iterator[Metric]:
    """The metrics each enrichment declares (``metrics`` of its class), from its ``stats()``.

    Declarations that share a name become one family, one sample per enrichment.
    """
    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
    stats: dict[int, dict[str, float]] = {}
    for enrichment, spec in metric_specs(enrichments):
        values = stats.get(id(enrichment))
        if values is None:
            values = stats[id(enrichment)] = enrichment.stats()
        family = families.get(spec.name)
        if family is None:
            kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            family = families[spec.name] = kind(spec.name, spec.help, labels=list(spec.labels))
        if spec.stat in values:
            family.add_metric(list(spec.labels.values()), values[spec.stat])
    yield from families.values()


class FaustProbe:
    """Consumer lag and readiness of a faust app; every method must run on the app's event loop.

    It reads the offsets faust's consumer keeps (``_committed_offset``: the
    next offset to read, as committed; ``_read_offset``: the last delivered)
    rather than asking the broker, so a scrape costs no request. These are
    private attributes of faust-streaming 0.15: re-check on upgrade.
    """

    def __init__(self, app: Any, raw_topic: str, stage: Any = None) -> None:
        self.app = app
        self.raw_topic = raw_topic
        self.stage = stage

    def _lag(self, consumer: Any, tp: Any) -> int | None:
        high = consumer.highwater(tp)
        if high is None:
            return None  # nothing fetched yet
        if high == 0:
            return 0
        done = committed_position(consumer, tp)
        return None if done is None else max(0, high - done)

    def _assignment(self) -> tuple[Any, list[Any]]:
        consumer = self.app.consumer
        try:
            assigned = consumer.assignment()
        except Exception:  # the underlying client is not started yet
            return consumer, []
        return consumer, sorted(assigned)

    def lags(self) -> list[PartitionLag]:
        """Lag of every assigned partition whose high watermark and position are known."""
        consumer, assigned = self._assignment()
        result = []
        for tp in assigned:
            lag = self._lag(consumer, tp)
            if lag is not None:
                result.append(PartitionLag(tp.topic, tp.partition, lag))
        return result

    def readiness(self) -> Readiness:
        """Ready once the group assigned partitions and the rollup state of those with work is restored.

        A raw partition with nothing to process (committed up to its high
        watermark) counts as ready: its state is restored by the first batch
        it receives, before that batch is aggregated.
        """
        app = self.app
        if not app.rebalancing_count:
            return Readiness(False, "waiting for the consumer group to assign partitions")
        if app.rebalancing:
            return Readiness(False, "rebalancing")
        if self.stage is None:
            return Readiness(True, "partitions assigned")
        consumer, assigned = self._assignment()
        generation = app.consumer_generation_id
        waiting = [
            tp.partition
            for tp in assigned
            if tp.topic == self.raw_topic
            and self.stage.needs_restore([(tp.partition, generation)])
            and self._lag(consumer, tp) != 0
        ]
        if waiting:
            return Readiness(False, f"restoring rollup state of partitions {waiting}")
        return Readiness(True, "partitions assigned, rollup state restored")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the worker's log: nothing is logged per request."""


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """``/metrics`` (also ``/``), ``/healthz`` and ``/ready`` over HTTP, in a thread of their own.

    A thread rather than the event loop, so ``/healthz`` and ``/metrics`` keep
    answering while the loop is busy; ``/ready`` asks the loop, with a timeout.
    """

    def __init__(self, registry: CollectorRegistry, readiness: Callable[[], Readiness]) -> None:
        self.metrics_app = make_wsgi_app(registry)
        self.readiness = readiness
        self.httpd: WSGIServer | None = None
        self.thread: threading.Thread | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI application."""
        path = environ.get("PATH_INFO") or "/"
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/ready":
            state = self.readiness()
            status = "200 OK" if state.ready else "503 Service Unavailable"
            return _text(
                start_response, status, f"{'ready' if state.ready else 'not ready'}: {state.reason}\n"
            )
        if path in ("/", "/metrics"):
            return self.metrics_app(environ, start_response)
        return _text(start_response, "404 Not Found", "not found: try /metrics, /healthz or /ready\n")

    def start(self, host: str, port: int) -> int:
        """Listen on ``host:port``, or on a free port (with a warning) when that one is taken."""
        try:
            self.httpd = self._bind(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigError(
                    f"RUM_METRICS_PORT: cannot listen on {host}:{port}: {exc.strerror or exc}"
                ) from exc
            self.httpd = self._bind(host, 0)
            log.warning(
                "metrics port %d is in use; serving metrics on port %d instead "
                "(give each worker on a host its own RUM_METRICS_PORT)",
                port,
                self.port,
                extra={"port": self.port},
            )
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="rum-metrics", daemon=True)
        self.thread.start()
        log.info(
            "metrics on http://%s:%d/metrics (/healthz, /ready)", host, self.port, extra={"port": self.port}
        )
        return self.port

    def _bind(self, host: str, port: int) -> WSGIServer:
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        except socket.gaierror as exc:
            raise ConfigError(f"RUM_METRICS_HOST: cannot resolve {host!r}: {exc}") from None

        class Server(_ThreadingServer):
            address_family = family

        return make_server(host, port, self, Server, handler_class=_QuietHandler)

    @property
    def port(self) -> int:
        """The port listened on (the actual one when 0 was asked for)."""
        assert self.httpd is not None
        return int(self.httpd.server_address[1])

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]
