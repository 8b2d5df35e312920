"""HTTP intake load test: concurrent clients post NDJSON batches to a running `rum-pipeline intake`.

Starts an intake on a free loopback port, backed by the real broker (its own
topic prefix), and runs --clients clients, each posting --batch generated
shop actions per request and waiting for the answer, for --seconds. Reports
requests/s, events/s and latency percentiles, then reads the raw topic back:
the number of events in Kafka must equal the number the intake acknowledged
(a 202 is only sent once Kafka acknowledged), or the run fails.

Baseline, measured in the same run with the same clients and batches: an
aiokafka producer with the intake's settings (acks=all, idempotent) sending
each batch straight to Kafka and waiting for its acknowledgements. The ratio
says what the HTTP hop costs; the machine is shared, so compare ratios.

    python bench/intake.py [--seconds 20] [--clients 16] [--batch 50] [--json FILE]

The JSON file holds requests_per_s, events_per_s, p99_ms, acknowledged and
in_kafka, plus the baseline and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rollups import delete_topics, settings_of  # bench/rollups.py: shared bench helpers

from pipeline.consume import assign_topics, make_reader
from pipeline.generate import TrafficGenerator
from pipeline.intake.child import running_intake
from pipeline.produce import make_producer
from pipeline.settings import Settings
from pipeline.settings_env import child_env
from pipeline.topics import OTHER, RAW

TOKEN = "bench-token"


@dataclass
class Run:
    """What one load run measured."""

    seconds: float = 0.0
    requests: int = 0
    acknowledged: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    #: Events of the warm-up request: in Kafka, but not part of the measured run.
    warmup: int = 0

    def percentile(self, q: float) -> float:
        """The q-th percentile of request latency in ms (nearest rank)."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def batches(count: int, size: int, seed: int) -> list[list[bytes]]:
    """``count`` batches of ``size`` generated raw actions (valid ones only)."""
    messages = TrafficGenerator(seed=seed).messages(count * size)
    values = [m.value for m in messages]
    return [values[i * size : (i + 1) * size] for i in range(count)]


async def load(url: str, work: list[list[bytes]], clients: int, seconds: float) -> Run:
    """``clients`` concurrent clients posting batches in turn until ``seconds`` have passed."""
    run = Run()
    bodies = [b"\n".join(batch) for batch in work]
    endpoint = f"{url}/api/v2/rum?ddsource=browser&dd-api-key={TOKEN}&dd-evp-origin=browser&batch_time=1"
    connector = aiohttp.TCPConnector(limit=clients)
    started = stop_at = 0.0

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        n = index
        while time.perf_counter() < stop_at:
            body = bodies[n % len(bodies)]
            n += clients
            sent = time.perf_counter()
            async with session.post(endpoint, data=body, headers={"Content-Type": "text/plain"}) as response:
                answer = await response.json()
            run.latencies_ms.append((time.perf_counter() - sent) * 1000)
            run.statuses[response.status] += 1
            run.requests += 1
            if response.status == 202:
                run.acknowledged += answer["accepted"]

    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm-up (not counted, not read back): connections and the producer's metadata.
        async with session.post(endpoint, data=bodies[0]) as response:
            if response.status != 202:
                raise RuntimeError(f"warm-up request answered {response.status}: {await response.text()}")
            run.warmup = (await response.json())["accepted"]
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    run.seconds = time.perf_counter() - started
    return run


async def direct(
    settings: Settings, topic: str, work: list[list[bytes]], clients: int, seconds: float
) -> Run:
    """The baseline: the same clients and batches produced straight to Kafka, each batch awaited."""
    run = Run()
    producer = make_producer(settings)
    await producer.start()
    await asyncio.gather(*[await producer.send(topic, value) for value in work[0]])  # warm-up
    started = time.perf_counter()
    stop_at = started + seconds

    async def client(index: int) -> None:
        n = index
        while time.perf_counter() < stop_at:
            batch = work[n % len(work)]
            n += clients
            sent = time.perf_counter()
            futures = [await producer.send(topic, value) for value in batch]
            await asyncio.gather(*futures)
            run.latencies_ms.append((time.perf_counter() - sent) * 1000)
            run.requests += 1
            run.acknowledged += len(batch)

    try:
        await asyncio.gather(*(client(i) for i in range(clients)))
    finally:
        await producer.stop()
    run.seconds = time.perf_counter() - started
    return run


async def count_records(settings: Settings, topic: str, expected: int, timeout: float = 60) -> int:
    """Records in ``topic``: read until ``expected`` arrived and 2 s bring nothing more (or the timeout)."""
    consumer = make_reader(settings)
    await consumer.start()
    try:
        await assign_topics(consumer, [topic])
        count, quiet_since = 0, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=50000)
            got = sum(len(records) for records in batch.values())
            count += got
            if got:
                quiet_since = time.monotonic()
            elif count >= expected and time.monotonic() - quiet_since > 2:
                break
        return count
    finally:
        await consumer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the intake run (default 20)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--batch", type=int, default=50, help="events per request (default 50)")
    parser.add_argument(
        "--baseline-seconds", type=float, default=5.0, help="length of the direct run (default 5)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    env = child_env(
        os.environ,
        {"kafka.topic_prefix": f"bench{tag}.", "intake.client_tokens": f"{TOKEN}=*", "log.level": "warning"},
    )
    settings = settings_of(env)
    # The baseline writes to the other-events topic, which the intake run leaves empty.
    baseline_topic = settings.topic(OTHER)
    work = batches(200, args.batch, seed=7)
    print(f"intake load test: {args.clients} clients, {args.batch} events per request, {args.seconds:g} s")

    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        log = Path(tmp) / "intake.log"
        try:
            with running_intake(env, log) as intake:
                url = intake.url
                base = asyncio.run(
                    direct(settings, baseline_topic, work, args.clients, args.baseline_seconds)
                )
                run = asyncio.run(load(url, work, args.clients, args.seconds))
            acknowledged = run.acknowledged + run.warmup  # every 202 counts, the warm-up's too
            in_kafka = asyncio.run(count_records(settings, settings.topic(RAW), acknowledged))
        finally:
            asyncio.run(delete_topics(settings))
        problems = [line for line in log.read_text(errors="replace").splitlines() if "Traceback" in line]

    events_per_s = run.acknowledged / run.seconds
    base_events_per_s = base.acknowledged / base.seconds
    figures: dict[str, Any] = {
        "requests_per_s": round(run.requests / run.seconds, 1),
        "events_per_s": round(events_per_s, 1),
        "p99_ms": round(run.percentile(99), 2),
        "acknowledged": acknowledged,
        "in_kafka": in_kafka,
        "p50_ms": round(run.percentile(50), 2),
        "mean_ms": round(statistics.fmean(run.latencies_ms), 2) if run.latencies_ms else 0.0,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "baseline_events_per_s": round(base_events_per_s, 1),
        "baseline_p99_ms": round(base.percentile(99), 2),
        "ratio_to_direct": round(events_per_s / base_events_per_s, 3) if base_events_per_s else 0.0,
        "clients": args.clients,
        "batch": args.batch,
        "seconds": round(run.seconds, 1),
    }
    print(
        f"  intake : {figures['requests_per_s']:>9,.1f} requests/s {figures['events_per_s']:>10,.1f} events/s"
    )
    print(
        f"           latency p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; "
        f"statuses {figures['statuses']}"
    )
    print(
        f"  direct : {figures['baseline_events_per_s']:>31,.1f} events/s (aiokafka, same batches, "
        f"p99 {figures['baseline_p99_ms']} ms)"
    )
    print(f"  ratio  : intake / direct = {figures['ratio_to_direct']}")
    print(f"  Kafka  : {in_kafka} events in the raw topic, {acknowledged} acknowledged")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = in_kafka == acknowledged and not problems
    if problems:
        print("  intake log has tracebacks:", *problems[:5], sep="\n    ")
    print("OK" if ok else "FAILED: the raw topic does not hold exactly the acknowledged events")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
