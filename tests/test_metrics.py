"""Worker metrics from the pipeline's own counters, and the /metrics, /healthz, /ready server."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import maxminddb
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import __version__
from pipeline.app import create_app
from pipeline.generate import exact_malformed
from pipeline.metrics import FaustProbe, LoopBridge, MetricsServer, Readiness, WorkerMetrics
from pipeline.process import Processor
from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.rollups.stage import RollupStage
from pipeline.settings import Settings, load_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(metrics: WorkerMetrics) -> Samples:
    return parse_samples(generate_latest(metrics.registry).decode())


@pytest.fixture
def settings(test_mmdb: Path) -> Settings:
    return load_settings({"RUM_GEOIP_DATABASE": str(test_mmdb), "RUM_TOPIC_PREFIX": "m."})


def test_counters_follow_what_the_processor_did(settings: Settings, test_mmdb: Path) -> None:
    generated = exact_malformed(600, 30, seed=4)
    kinds = Counter(m.malformed for m in generated if m.malformed)
    processor = Processor(settings)
    metrics = WorkerMetrics(settings)
    metrics.bind(processor)
    before = scrape(metrics)
    assert before[("rum_events_in_total", (("topic", "m.rum.actions.raw"),))] == 0
    for i, message in enumerate(generated):
        processor.process(message.value, partition=0, offset=i)

    got = scrape(metrics)
    assert got[("rum_events_in_total", (("topic", "m.rum.actions.raw"),))] == 600
    assert got[("rum_events_out_total", (("topic", "m.rum.actions.enriched"),))] == 570
    assert got[("rum_events_out_total", (("topic", "m.rum.actions.bad"),))] == 30
    for kind in ("parse", "schema", "size", "enrichment"):
        assert got[("rum_bad_rows_total", (("kind", kind),))] == kinds.get(kind, 0)
    stats = processor.stats()
    for enrichment, cache in (("browser", "user_agent"), ("geo", "ip")):
        assert got[("rum_enrich_cache_hits_total", (("cache", cache),))] == stats[enrichment]["cache_hits"]
        assert (
            got[("rum_enrich_cache_misses_total", (("cache", cache),))] == stats[enrichment]["cache_misses"]
        )
        assert got[("rum_enrich_cache_entries", (("cache", cache),))] == stats[enrichment]["cache_size"]
    # Repeated user agents hit the cache: both counters move.
    assert got[("rum_enrich_cache_hits_total", (("cache", "user_agent"),))] > 0
    assert got[("rum_enrich_cache_misses_total", (("cache", "user_agent"),))] > 0
    assert got[("rum_enrichment_warnings_total", ())] == stats["processor"]["warnings"]

    with maxminddb.open_database(str(test_mmdb)) as reader:
        built = reader.metadata().build_epoch
    assert got[("rum_geoip_database_build_timestamp_seconds", ())] == built
    assert got[("rum_geoip_database_age_seconds", ())] == pytest.approx(time.time() - built, abs=5)
    info = {
        "app_id": "rum-pipeline",
        "hostname": socket.gethostname(),
        "pid": str(os.getpid()),
        "processor": "rum-pipeline",
        "version": __version__,
    }
    assert got[("rum_worker_info", tuple(sorted(info.items())))] == 1
    # No probe bound (no Kafka here): no lag or readiness series.
    assert not any(name in ("rum_consumer_lag", "rum_ready") for name, _ in got)


def test_rollup_stage_counters_are_exposed(settings: Settings, tmp_path: Path) -> None:
    stage = RollupStage(settings, load_rollup_config(default_config_path()), lambda: None, set)
    metrics = WorkerMetrics(settings, process_metrics=False)
    metrics.bind(Processor(settings), stage)
    stage.counts.update(partials_in=7, partials=9, late=2, facets=5, rollups=3)
    stage.engine.counts.update(late=4, replayed=6)
    got = scrape(metrics)
    out = {labels[0][1]: v for (name, labels), v in got.items() if name == "rum_events_out_total"}
    assert out["m.rum.facets.index"] == 5
    assert out["m.rum.measures.rollup"] == 3
    assert out["m.rum.actions.late"] == 2
    assert out["m.rum.internal.rollup-partials"] == 9
    assert got[("rum_events_in_total", (("topic", "m.rum.internal.rollup-partials"),))] == 7
    assert got[("rum_late_actions_total", ())] == 2
    assert got[("rum_rollup_missed_windows_total", (("reason", "late"),))] == 4
    assert got[("rum_rollup_replayed_total", ())] == 6
    stage.spill.folder = tmp_path / "spill" / "pid-1"
    partials = stage.spill.new_map(str.encode, str.encode, bytes.decode, len)
    for key in ("a", "bb", "ccc"):
        partials[key] = key
    stage.spill.capacity = 2
    assert stage.spill.balance() == 2
    got = scrape(metrics)
    assert got[("rum_rollup_state_entries", (("where", "memory"),))] == 1
    assert got[("rum_rollup_state_entries", (("where", "spilled"),))] == 2
    assert got[("rum_rollup_state_spill_total", (("op", "spilled"),))] == 2
    stage.spill.close()


def test_batch_histogram_counts_batches(settings: Settings) -> None:
    metrics = WorkerMetrics(settings, process_metrics=False)
    for seconds in (0.004, 0.02, 0.3):
        metrics.batch_seconds.observe(seconds)
    got = scrape(metrics)
    assert got[("rum_batch_duration_seconds_count", ())] == 3
    assert got[("rum_batch_duration_seconds_sum", ())] == pytest.approx(0.324)
    assert got[("rum_batch_duration_seconds_bucket", (("le", "0.025"),))] == 2


def test_two_workers_in_one_process_keep_separate_counts(settings: Settings) -> None:
    a, b = WorkerMetrics(settings), WorkerMetrics(settings)
    a.batch_seconds.observe(1)
    assert scrape(a)[("rum_batch_duration_seconds_count", ())] == 1
    assert scrape(b)[("rum_batch_duration_seconds_count", ())] == 0


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[MetricsServer, list[Readiness]]]:
    state = [Readiness(False, "starting")]
    metrics = WorkerMetrics(settings, process_metrics=False)
    metrics.batch_seconds.observe(0.01)
    srv = MetricsServer(metrics.registry, lambda: state[0])
    srv.start("127.0.0.1", 0)
    yield srv, state
    srv.stop()


def test_server_answers_metrics_health_and_readiness(server: tuple[MetricsServer, list[Readiness]]) -> None:
    srv, state = server
    base = f"http://127.0.0.1:{srv.port}"
    assert http_get(f"{base}/healthz") == (200, "ok\n")
    assert http_get(f"{base}/ready") == (503, "not ready: starting\n")
    state[0] = Readiness(True, "partitions assigned")
    assert http_get(f"{base}/ready") == (200, "ready: partitions assigned\n")
    status, body = http_get(f"{base}/metrics")
    assert status == 200
    assert parse_samples(body)[("rum_batch_duration_seconds_count", ())] == 1
    assert http_get(f"{base}/nothing-here")[0] == 404


def _with_worker(settings: Settings, **values: Any) -> Settings:
    """``settings`` with some ``worker`` settings changed."""
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=values)})


def test_taken_port_falls_back_to_a_free_one(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = WorkerMetrics(_with_worker(settings, metrics_host="127.0.0.1", metrics_port=port))
        with caplog.at_level(logging.INFO, logger="pipeline.metrics"):
            actual = metrics.serve()
        try:
            assert actual is not None and actual != port
            assert http_get(f"http://127.0.0.1:{actual}/healthz")[0] == 200
            warning = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warning) == 1 and f"port {port} is in use" in warning[0].getMessage()
            assert warning[0].port == actual  # type: ignore[attr-defined]
        finally:
            metrics.close()


def test_port_zero_turns_the_server_off(settings: Settings) -> None:
    metrics = WorkerMetrics(_with_worker(settings, metrics_port=0))
    assert metrics.serve() is None
    assert metrics.server is None


def test_readiness_and_lag_are_asked_on_the_loop() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        bridge = LoopBridge(loop, timeout=0.5)
        assert bridge.call(lambda: threading.current_thread() is thread)
        # A loop stuck in a long synchronous step does not answer in time.
        loop.call_soon_threadsafe(time.sleep, 1.5)
        with pytest.raises(TimeoutError):
            bridge.call(lambda: 1)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_worker_that_has_not_joined_its_group_is_not_ready(settings: Settings) -> None:
    metrics = WorkerMetrics(settings, process_metrics=False)
    assert metrics.readiness() == Readiness(False, "starting")  # no loop yet
    app = create_app(_with_worker(settings, web_port=0), metrics)
    probe = FaustProbe(app, settings.topic("rum.actions.raw"))
    state = probe.readiness()
    assert not state.ready and "assign" in state.reason
    assert probe.lags() == []


def test_a_stopped_worker_is_not_ready_and_still_scrapes(settings: Settings) -> None:
    metrics = WorkerMetrics(settings, process_metrics=False)
    create_app(_with_worker(settings, web_port=0), metrics)  # binds its probe
    loop = asyncio.new_event_loop()
    loop.close()
    metrics.attach_loop(loop)
    state = metrics.readiness()
    assert not state.ready and "closed" in state.reason
    got = scrape(metrics)
    assert got[("rum_ready", ())] == 0
    assert not any(name == "rum_consumer_lag" for name, _ in got)
