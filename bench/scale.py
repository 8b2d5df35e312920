"""Scale benchmark: do two worker processes enrich more actions/s than one?

Each run sends the same generated traffic twice, each copy under its own topic
prefix and consumer group: to one `rum-pipeline worker`, then to two worker
processes (one group, own state folders). The workers start on empty topics;
once their group has settled, one warm-up action per raw partition makes them
restore each partition's rollup state; then the traffic is produced at full
speed. Rates come from the enriched records' timestamps (first to last, and
the later half alone), so start-up, rebalances and state restores are not
counted: this is the steady rate of one process against two.

The workers, the broker and this script share the machine's cores (the report
states how many): on a 2-core machine the broker, the producer and two workers
compete for the same 2 cores, so the ratio says how much headroom a second
process finds there, not how far the design scales on separate machines.
Rollups are on (the default config) unless --rollups off.

    python bench/scale.py [--events 40000] [--runs 3] [--rollups on|off] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rollups import bench_env, delete_topics, log_problems, settings_of, summarize, worker

from pipeline.admin import create_topics
from pipeline.clock import now_ms
from pipeline.consume import record_timestamps
from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, make_producer, publish
from pipeline.settings import Settings
from pipeline.settings_env import child_env
from pipeline.topics import ENRICHED, RAW

#: Log line of a faust worker given partitions; the group has settled once none comes for a while.
ASSIGNED = "Setting newly assigned partitions"


def settle(logs: list[Path], quiet: float = 4.0, timeout: float = 120) -> None:
    """Wait until every worker has been given partitions and no rebalance happened for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    last: list[int] = []
    since = time.monotonic()
    while time.monotonic() < deadline:
        counts = [log.read_text(errors="replace").count(ASSIGNED) if log.exists() else 0 for log in logs]
        if counts != last:
            last, since = counts, time.monotonic()
        elif all(counts) and time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the worker group did not settle within {timeout} s")


async def warm_up(settings: Settings, base: Message) -> int:
    """One action to each raw partition, so each partition's state is restored before the run."""
    producer = make_producer(settings)
    await producer.start()
    try:
        raw = settings.topic(RAW)
        partitions = sorted(await producer.partitions_for(raw))
        for p in partitions:
            await producer.send_and_wait(raw, base.value, key=base.key, partition=p)
        return len(partitions)
    finally:
        await producer.stop()


def per_second(stamps: list[int]) -> float:
    """Records per second over their own span of timestamps (ms)."""
    span = (stamps[-1] - stamps[0]) / 1000
    return len(stamps) / span if span > 0 else float("inf")


async def steady_rates(settings: Settings, skip: int, expected: int, timeout: float) -> tuple[float, float]:
    """(whole, later half) enriched actions/s over all but the first ``skip`` records."""
    stamps = (await record_timestamps(settings, settings.topic(ENRICHED), skip + expected, timeout))[skip:]
    half = stamps[len(stamps) // 2 :]
    return per_second(stamps), per_second(half)


def scale_run(messages: list[Message], workers: int, rollups: bool, tmp: Path) -> tuple[float, float]:
    """``workers`` worker processes over their own copy of ``messages``: (whole, later half) actions/s."""
    env = bench_env(tmp, RUM_ROLLUPS="true" if rollups else "false")
    settings = settings_of(env)
    asyncio.run(create_topics(settings))
    logs = [tmp / f"worker-{settings.kafka.app_id}-{i}.log" for i in range(workers)]
    try:
        with contextlib.ExitStack() as stack:
            for i, log in enumerate(logs):
                own = child_env(env, {"worker.data_dir": f"{settings.worker.data_dir}-{i}"})
                stack.enter_context(worker(own, log))
            settle(logs)
            partitions = asyncio.run(warm_up(settings, messages[0]))
            asyncio.run(record_timestamps(settings, settings.topic(ENRICHED), partitions, 120))
            summary = asyncio.run(publish(settings, settings.topic(RAW), messages))
            if summary.failed:
                raise RuntimeError(f"{summary.failed} messages were not acknowledged")
            return asyncio.run(steady_rates(settings, partitions, len(messages), 300))
    finally:
        for log in logs:
            for line in log_problems(log) if log.exists() else ():
                print(f"    [{workers} worker(s) log] {line}")
        asyncio.run(delete_topics(settings))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=40000, help="actions per run")
    parser.add_argument("--runs", type=int, default=3, help="one-then-two-worker pairs; medians are reported")
    parser.add_argument("--rollups", choices=("on", "off"), default="on", help="rollups on (default) or off")
    parser.add_argument("--seed", type=int, default=5, help="seed of the generated traffic")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # metadata notes about deleted topics

    start = now_ms() - 3_600_000
    messages = [
        Message(m.key, m.value)
        for m in TrafficGenerator(seed=args.seed, start_ms=start).messages(args.events)
    ]
    rollups = args.rollups == "on"
    rates: dict[str, list[float]] = {
        name: [] for name in ("one", "two", "ratio", "one steady", "two steady", "ratio steady")
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        for i in range(args.runs):
            one = scale_run(messages, 1, rollups, Path(tmp_name))
            two = scale_run(messages, 2, rollups, Path(tmp_name))
            for suffix, k in (("", 0), (" steady", 1)):
                rates[f"one{suffix}"].append(one[k])
                rates[f"two{suffix}"].append(two[k])
                rates[f"ratio{suffix}"].append(two[k] / one[k])
            print(
                f"  run {i + 1}: one worker {one[0]:,.0f}/s, two workers {two[0]:,.0f}/s, "
                f"ratio {two[0] / one[0]:.2f} (later half {two[1] / one[1]:.2f})"
            )
    cores = os.cpu_count()
    print(
        f"two workers vs one ({args.events} actions, rollups {args.rollups}, median of {args.runs}, min-max):"
    )
    for label, name in (("one worker", "one"), ("two workers", "two")):
        v = rates[name]
        print(f"  {label:12} {statistics.median(v):9,.0f} actions/s ({min(v):,.0f}-{max(v):,.0f})")
    v = rates["ratio"]
    print(f"  ratio        {statistics.median(v):9.2f}  ({min(v):.2f}-{max(v):.2f})")
    print(f"  broker, workers and this script shared {cores} cores")
    report: dict[str, Any] = {
        "machine": {"cores": cores, "python": sys.version.split()[0]},
        "events": args.events,
        "rollups": rollups,
        "shared_cores": cores,
        **{name.replace(" ", "_"): summarize(values) for name, values in rates.items()},
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
