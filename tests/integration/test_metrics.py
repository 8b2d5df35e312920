"""A worker's /metrics on the real broker: its counters equal what was produced and what it wrote."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline.generate import exact_malformed
from pipeline.process import Processor
from pipeline.produce import Message, publish
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, FACETS, LATE, PARTIALS, RAW, ROLLUPS
from tests.chaos_helpers import delete_topics, read_all
from tests.kafka_helpers import CLI, WorkerProcess, isolated_env, run_worker, settings_from
from tests.test_metrics import Samples, http_get, parse_samples

pytestmark = pytest.mark.kafka

GENERATED, MALFORMED = 2_000, 40
# Values that must never show up in a log line.
SECRET_IP = "81.2.69.217"
SECRET_UA = "ZzMetricsMarker/3.1 (zz-ua-marker)"
SECRET_CONTEXT = "zz-metrics-context-8812"


def _marked(i: int, *, bad: bool = False) -> bytes:
    event = {
        "type": "action",
        "date": int(time.time() * 1000) - 1000,
        "application": {"id": "shop"},
        "session": {"id": f"marked-{i}"},
        "view": {"id": "v", "url": "https://shop.example/cart"},
        "action": {"id": f"marked-{i}", "type": "custom", "target": {"name": "checkout"}},
        "context": {"note": SECRET_CONTEXT, "value": 10.5},
        "network": {"client": {"ip": SECRET_IP}},
        "http": {"useragent": SECRET_UA},
    }
    if bad:
        event["view"] = SECRET_CONTEXT  # schema: view must be an object
    return orjson.dumps(event)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_port(worker: WorkerProcess, timeout: float = 60) -> int:
    """The metrics port the worker logged (JSON log lines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in worker.log.read_text(errors="replace").splitlines():
            if '"pipeline.metrics"' in line and '"port"' in line:
                return int(json.loads(line)["port"])
        assert worker.process.poll() is None, worker.tail()
        time.sleep(0.05)
    raise AssertionError(f"the worker never logged its metrics port:\n{worker.tail()}")


def _scrape(port: int) -> Samples:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return parse_samples(body)


def _events(samples: Samples) -> Samples:
    return {key: value for key, value in samples.items() if key[0].startswith("rum_events")}


def _by_label(samples: Samples, name: str) -> dict[str, float]:
    return {labels[0][1]: value for (n, labels), value in samples.items() if n == name and len(labels) == 1}


def _records_written(settings: Settings, topic: str) -> int:
    """Records written to ``topic``, read committed and counted.

    Not its end offsets: transaction markers take offsets too (the partials are
    written in transactions). Nothing is compacted away within a test this short.
    """
    return len(read_all(settings, topic))


@pytest.fixture
def env(tmp_path: Path, test_mmdb: Path) -> Iterator[dict[str, str]]:
    """The test's environment; its topics are deleted afterwards (the broker keeps files open for each)."""
    env = isolated_env(
        tmp_path,
        RUM_GEOIP_DATABASE=str(test_mmdb),
        RUM_LOG_FORMAT="json",
        RUM_METRICS_PORT=str(_free_port()),
        RUM_METRICS_HOST="127.0.0.1",
    )
    yield env
    delete_topics(settings_from(env))


def test_worker_metrics_equal_what_was_produced(env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    generated = exact_malformed(GENERATED, MALFORMED, seed=23, allow_huge=True)
    messages = [Message(m.key, m.value, m.malformed) for m in generated]
    messages += [Message(f"marked-{i}".encode(), _marked(i)) for i in range(5)]
    messages.append(Message(b"marked-bad", _marked(99, bad=True), "schema"))
    total = len(messages)
    bad_kinds = Counter(m.malformed for m in messages if m.malformed)
    malformed = sum(bad_kinds.values())
    assert malformed == MALFORMED + 1 and set(bad_kinds) == {"parse", "schema", "size"}
    summary = asyncio.run(publish(settings, settings.topic(RAW), iter(messages)))
    assert summary.sent == total and summary.failed == 0

    # The caches' ground truth: the same messages through a processor of our own. Hits and
    # misses do not depend on the order (every distinct value misses once: the caches are
    # larger than the traffic's distinct values).
    truth = Processor(settings)
    for m in messages:
        truth.process(m.value)
    stats = truth.stats()

    with run_worker(env, tmp_path / "worker.log") as worker:
        port = _listening_port(worker)
        base = f"http://127.0.0.1:{port}"
        assert http_get(f"{base}/healthz") == (200, "ok\n")
        ready_seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, _ = http_get(f"{base}/ready")
            ready_seen.append(status)
            if status == 200:
                break
            time.sleep(0.1)
        assert ready_seen[-1] == 200, worker.tail()
        assert ready_seen[0] == 503  # not ready before the group assigned its partitions

        raw, enriched, partials = settings.topic(RAW), settings.topic(ENRICHED), settings.topic(PARTIALS)
        # Done once every raw action is in, the merge has read every partial written, nothing
        # is left uncommitted on any partition, and the counters stay still between scrapes.
        deadline = time.monotonic() + 180
        previous: Samples = {}
        samples = _scrape(port)
        while True:
            events_in = _by_label(samples, "rum_events_in_total")
            events_out = _by_label(samples, "rum_events_out_total")
            lag = {
                (dict(labels)["topic"], dict(labels)["partition"]): value
                for (name, labels), value in samples.items()
                if name == "rum_consumer_lag"
            }
            if (
                events_in.get(raw) == total
                and events_in.get(partials) == events_out.get(partials, 0) > 0
                # Partials are written in transactions: each commit marker after the last record
                # counts one in the lag (as in Kafka's own tools), so only the raw topic's must be 0.
                and sum(v for (topic, _), v in lag.items() if topic != partials) == 0
                and _events(samples) == previous
            ):
                break
            assert time.monotonic() < deadline, f"not done: in {events_in}, out {events_out}, lag {lag}"
            assert worker.process.poll() is None, worker.tail()
            previous = _events(samples)
            time.sleep(2)
            samples = _scrape(port)
        assert len([topic for topic, _ in lag if topic == raw]) == settings.kafka.partitions
        written = {
            name: _records_written(settings, settings.topic(name))
            for name in (FACETS, ROLLUPS, PARTIALS, LATE)
        }
        assert http_get(f"{base}/ready")[0] == 200
        assert worker.process.poll() is None, worker.tail()
        # While it runs, every line the worker writes is one JSON object. (At exit the
        # datasketches extension may print a line of its own, outside logging.)
        for line in worker.log.read_text(errors="replace").splitlines():
            entry = json.loads(line)
            assert {"time", "level", "logger", "message"} <= set(entry)

    assert events_in[raw] == total
    assert events_out[enriched] == total - malformed
    assert events_out[settings.topic(BAD)] == malformed
    assert _by_label(samples, "rum_bad_rows_total") == {
        kind: float(bad_kinds.get(kind, 0)) for kind in ("parse", "schema", "size", "enrichment")
    }
    # Every rollup record the worker counted is on its topic, and nothing else is.
    for name in (FACETS, ROLLUPS, PARTIALS, LATE):
        assert events_out[settings.topic(name)] == written[name], name
    assert written[FACETS] > 0 and written[ROLLUPS] > 0, (events_in, events_out)
    assert events_in[settings.topic(PARTIALS)] == written[PARTIALS]  # the merge read every partial
    assert samples[("rum_late_actions_total", ())] == written[LATE]

    hits, misses = (
        _by_label(samples, "rum_enrich_cache_hits_total"),
        _by_label(samples, "rum_enrich_cache_misses_total"),
    )
    assert (hits["user_agent"], misses["user_agent"]) == (
        stats["browser"]["cache_hits"],
        stats["browser"]["cache_misses"],
    )
    assert (hits["ip"], misses["ip"]) == (stats["geo"]["cache_hits"], stats["geo"]["cache_misses"])
    assert samples[("rum_geoip_database_age_seconds", ())] > 0
    assert samples[("rum_batch_duration_seconds_count", ())] >= 1
    assert samples[("rum_batch_duration_seconds_sum", ())] > 0
    assert samples[("rum_ready", ())] == 1

    log = worker.log.read_text(errors="replace")
    for secret in (SECRET_IP, SECRET_UA, "ZzMetricsMarker", SECRET_CONTEXT):
        assert secret not in log
