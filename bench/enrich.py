"""Enrichment benchmark: the hot path in one process, and one worker through the real broker.

(a) Hot path: decode, validate, enrich, encode of generated traffic, in µs/event,
    beside a naive version of the same steps (stdlib json, user_agents.parse and
    GeoIP lookups with no caches) and beside the pipeline with its caches off.
(b) Broker: raw -> enriched actions/s of one `rum-pipeline worker`, beside a
    plain aiokafka consume -> produce pass-through of the same messages (the
    practical ceiling), measured in the same run. Rates come from the output
    records' timestamps (first to last), so process start-up is not counted.
    The worker runs with RUM_ROLLUPS=false: this measures enrichment alone
    (bench/rollups.py measures what the rollups cost on top).

Every figure is the median of --runs runs with its spread (min-max); the
machine is shared, so compare the ratios, not the absolute numbers.

    python bench/enrich.py [--events 20000] [--broker-events 50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import user_agents
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rollups import delete_topics

from pipeline.admin import create_topics
from pipeline.consume import record_timestamps
from pipeline.enrich import build_enrichments
from pipeline.enrich.browser import BrowserEnrichment, user_agent_fields
from pipeline.generate import TrafficGenerator
from pipeline.kafka_auth import client_kwargs
from pipeline.process import Processor
from pipeline.produce import Message, publish
from pipeline.schemas import schema_errors
from pipeline.settings import Settings, load_settings
from pipeline.settings_env import child_env, settings_environ
from pipeline.topics import ENRICHED, RAW

CLI = str(Path(sys.executable).with_name("rum-pipeline"))


class NaiveBrowser(BrowserEnrichment):
    """The browser enrichment as a first version would write it: user_agents.parse every time."""

    def enrich(self, event: dict[str, Any], warnings: list[Any]) -> None:
        ua = event.get("http", {}).get("useragent")
        if isinstance(ua, str):
            event.update(user_agent_fields(user_agents.parse(ua)))


def naive_process(payload: bytes, enrichments: list[Any]) -> bytes:
    """decode (stdlib json), validate, enrich without caches, encode (stdlib json)."""
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return b"bad"
    if not isinstance(event, dict) or schema_errors("raw-action.v1", event):
        return b"bad"
    warnings: list[Any] = []
    for enrichment in enrichments:
        enrichment.enrich(event, warnings)
    return json.dumps(event).encode()


def hot_path(events: int, runs: int) -> dict[str, Any]:
    """µs/event of the optimised processor, the processor with caches off, and the naive version."""
    messages = [m.value for m in TrafficGenerator(seed=3, malformed_share=0.01).messages(events)]
    naive_n = max(1, events // 10)  # the naive path is ~50x slower: fewer events, same mix
    results: dict[str, list[float]] = {"optimised": [], "no caches": [], "naive": []}
    for _ in range(runs):
        settings = load_settings({})
        processor = Processor(settings)
        started = time.perf_counter()
        for i, payload in enumerate(messages):
            processor.process(payload, topic="raw", partition=0, offset=i)
        results["optimised"].append((time.perf_counter() - started) / len(messages) * 1e6)

        cold = Processor(load_settings({"RUM_UA_CACHE_SIZE": "0", "RUM_IP_CACHE_SIZE": "0"}))
        started = time.perf_counter()
        for i, payload in enumerate(messages[:naive_n]):
            cold.process(payload, topic="raw", partition=0, offset=i)
        results["no caches"].append((time.perf_counter() - started) / naive_n * 1e6)

        no_cache = load_settings({"RUM_UA_CACHE_SIZE": "0", "RUM_IP_CACHE_SIZE": "0"})
        naive = [e if e.name != "browser" else NaiveBrowser(0) for e in build_enrichments(no_cache)]
        started = time.perf_counter()
        for payload in messages[:naive_n]:
            naive_process(payload, naive)
        results["naive"].append((time.perf_counter() - started) / naive_n * 1e6)
    return {k: summarize(v) for k, v in results.items()}


def summarize(values: list[float]) -> dict[str, float]:
    """Median and spread of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


async def _rate_of(settings: Settings, topic: str, expected: int, timeout: float) -> float:
    """Records/s of ``topic`` from its records' timestamps, once ``expected`` records arrived."""
    stamps = await record_timestamps(settings, topic, expected, timeout)
    span = (stamps[-1] - stamps[0]) / 1000
    return len(stamps) / span if span > 0 else float("inf")


async def passthrough(settings: Settings, source: str, target: str, expected: int, batch: int) -> None:
    """Consume ``source`` and produce every message unchanged to ``target``, in batches."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"bench-pass-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        **client_kwargs(settings),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        max_request_size=16 * 1024 * 1024,
        **client_kwargs(settings),
    )
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < expected:
            got = await consumer.getmany(timeout_ms=200, max_records=batch)
            pending = []
            for tp, records in got.items():
                for record in records:
                    pending.append(
                        await producer.send(target, record.value, key=record.key, partition=tp.partition)
                    )
            await asyncio.gather(*pending)
            if got:
                await consumer.commit()
            done += len(pending)
    finally:
        await consumer.stop()
        await producer.stop()


def broker_run(base_env: dict[str, str], events: int, batch: int, tmp: Path) -> tuple[float, float]:
    """One worker run and one pass-through run over the same generated messages: (worker/s, pass/s)."""
    tag = uuid.uuid4().hex[:8]
    own = {
        "kafka.topic_prefix": f"bench{tag}.",
        "kafka.app_id": f"bench-{tag}",
        "worker.data_dir": str(tmp / tag),
        "worker.web_port": "0",
        "rollups.enabled": "false",  # enrichment alone: bench/rollups.py measures the rollups
    }
    env = child_env(base_env, own)
    settings = load_settings(settings_environ(env))
    pass_topic = settings.topic("bench.passthrough")
    try:
        asyncio.run(create_topics(settings))
        generated = TrafficGenerator(seed=5).messages(events)
        asyncio.run(publish(settings, settings.topic(RAW), (Message(m.key, m.value) for m in generated)))

        asyncio.run(_create(settings, pass_topic))
        asyncio.run(passthrough(settings, settings.topic(RAW), pass_topic, events, batch))
        pass_rate = asyncio.run(_rate_of(settings, pass_topic, events, 120))

        log = tmp / f"worker-{tag}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([CLI, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            worker_rate = asyncio.run(_rate_of(settings, settings.topic(ENRICHED), events, 300))
        finally:
            proc.terminate()
            proc.wait(60)
    finally:
        asyncio.run(delete_topics(settings, pass_topic))
    return worker_rate, pass_rate


async def _create(settings: Settings, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **client_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.kafka.partitions, 1)])
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000, help="events for the hot-path runs")
    parser.add_argument(
        "--broker-events", type=int, default=50000, help="events for each broker run (0 = skip)"
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    report: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}}
    hot = hot_path(args.events, args.runs)
    report["hot_path_us_per_event"] = hot
    print(f"hot path, µs/event (median of {args.runs}, min-max):")
    for name, s in hot.items():
        print(f"  {name:10} {s['median']:8.1f}  ({s['min']:.1f}-{s['max']:.1f})")
    print(f"  naive / optimised: {hot['naive']['median'] / hot['optimised']['median']:.1f}x slower")

    if args.broker_events:
        env = {k: v for k, v in os.environ.items()}
        batch = load_settings(settings_environ(env)).worker.batch_size
        workers, passes, ratios = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.runs):
                worker_rate, pass_rate = broker_run(env, args.broker_events, batch, Path(tmp))
                workers.append(worker_rate)
                passes.append(pass_rate)
                ratios.append(worker_rate / pass_rate)
                print(f"  broker run {i + 1}: worker {worker_rate:,.0f}/s, pass-through {pass_rate:,.0f}/s")
        report["broker"] = {
            "worker_per_s": summarize(workers),
            "passthrough_per_s": summarize(passes),
            "ratio": summarize(ratios),
            "events": args.broker_events,
        }
        print(f"one worker vs aiokafka pass-through ({args.broker_events} actions, median of {args.runs}):")
        for label, values in (("worker", workers), ("pass-through", passes)):
            spread = f"({min(values):,.0f}-{max(values):,.0f})"
            print(f"  {label:13} {statistics.median(values):10,.0f} actions/s {spread}")
        print(f"  ratio         {statistics.median(ratios):10.2f}  ({min(ratios):.2f}-{max(ratios):.2f})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
