"""Hostile input against clean traffic: does a worker keep its pace and its memory?

For clean traffic (the generator's) and then for each hostile class of
tests/fuzz/hostile.py, 10,000 actions in which every ``--every``-th is of that
class (default: one in a hundred) run through:

- ``--mode worker`` (default): one real ``rum-pipeline worker`` (rollups off)
  on its own prefixed topics of the local broker. Throughput is output
  records (enriched and bad) per second from their timestamps, first to
  last; memory is the worker's peak RSS (VmHWM) once it has written them.
- ``--mode process``: ``Processor.process`` in a fresh child process per
  class (the worker's per-message step, without Kafka); throughput from the
  child's CPU time (``time.process_time``) in the fastest of ``PASSES``
  passes, so that other processes taking the machine's cores count as little
  as they can; peak RSS of the child. Each class's child also times passes
  over the clean traffic between its own: the ``paired`` column is the median
  (and range) over runs of that in-process ratio; ``cost`` is what one hostile
  action costs in clean actions (median CPU time of its calls over that of
  the clean calls, timed one by one), the steadiest figure on a shared machine.

Classes run interleaved ``--runs`` times (clean traffic first and last in
each round); the figures of each class are the ratio of its median
throughput to clean traffic's median (and of the best runs, which filters
the pauses of a shared machine), and the difference of the medians of peak RSS.
Targets: throughput within 10 %, RSS within 100 MB. The machine is shared,
so read the spread of the clean runs as the noise.

    python bench/hostile.py [--mode worker|process] [--events 10000] [--every 10] [--size 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.admin import create_topics  # noqa: E402
from pipeline.consume import record_timestamps  # noqa: E402
from pipeline.generate import TrafficGenerator  # noqa: E402
from pipeline.process import Processor  # noqa: E402
from pipeline.produce import Message, publish  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.settings_env import child_env, settings_environ  # noqa: E402
from pipeline.topics import BAD, ENRICHED, RAW  # noqa: E402
from tests.fuzz import hostile  # noqa: E402

CLI = str(Path(sys.executable).with_name("rum-pipeline"))
CLEAN = "clean"
#: Passes over the stream in ``--mode process``; the fastest counts.
PASSES = 3


def stream(name: str, events: int, every: int, size: int) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of ``events`` generated actions, every ``every``-th replaced by class ``name``."""
    clean = [(m.key, m.value) for m in TrafficGenerator(seed=11).messages(events)]
    return with_class(clean, name, every, size)


def with_class(
    clean: list[tuple[bytes | None, bytes]], name: str, every: int, size: int
) -> list[tuple[bytes | None, bytes]]:
    """A copy of ``clean`` with every ``every``-th value replaced by class ``name`` (the rest shared)."""
    messages = list(clean)
    if name != CLEAN:
        make = hostile.CLASSES[name]
        for i in range(0, len(messages), every):
            messages[i] = (messages[i][0], make(i, size))
    return messages


def expected_outputs(messages: list[tuple[bytes | None, bytes]]) -> tuple[int, int]:
    """(enriched, bad) records the worker will write, from the processor itself."""
    processor = Processor(load_settings({}))
    enriched = sum(processor.process(value, key=key).enriched for key, value in messages)
    return enriched, len(messages) - enriched


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a running process (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def _stamps(settings: Any, enriched: int, bad: int) -> list[int]:
    stamps: list[int] = []
    for topic, count in ((ENRICHED, enriched), (BAD, bad)):
        if count:
            stamps += await record_timestamps(settings, settings.topic(topic), count, 600)
    return sorted(stamps)


def worker_run(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """One worker over one stream on fresh topics: records/s and peak RSS."""
    sys.path.insert(0, str(ROOT / "bench"))
    from rollups import delete_topics  # the benchmarks' own clean-up

    messages = stream(name, args.events, args.every, args.size)
    enriched, bad = expected_outputs(messages)
    tag = uuid.uuid4().hex[:8]
    own = {
        "kafka.topic_prefix": f"hostile{tag}.",
        "kafka.app_id": f"hostile-{tag}",
        "worker.data_dir": str(tmp / tag),
        "worker.web_port": "0",
        "rollups.enabled": "false",  # enrichment alone
    }
    env = child_env(os.environ, own)
    settings = load_settings(settings_environ(env))
    try:
        asyncio.run(create_topics(settings))
        asyncio.run(publish(settings, settings.topic(RAW), (Message(k, v) for k, v in messages)))
        with open(tmp / f"worker-{tag}.log", "wb") as log:
            proc = subprocess.Popen([CLI, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            stamps = asyncio.run(_stamps(settings, enriched, bad))
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    finally:
        asyncio.run(delete_topics(settings))
    span = (stamps[-1] - stamps[0]) / 1000
    raw_mb = sum(len(v) for _, v in messages) / 1e6
    return {"per_s": len(stamps) / span, "rss_mb": rss, "raw_mb": raw_mb, "bad": bad}


def _pass(processor: Processor, messages: list[tuple[bytes | None, bytes]]) -> tuple[float, int]:
    """CPU seconds of one pass over ``messages`` and the bad rows it gave."""
    start = time.process_time()  # CPU time: a shared machine's other processes do not count
    bad = 0
    for key, value in messages:
        bad += processor.process(value, key=key).bad_kind is not None
    return time.process_time() - start, bad


def process_one(name: str, events: int, every: int, size: int) -> dict[str, float]:
    """The processor alone over one stream, in this (fresh) process.

    For a hostile class, passes over clean traffic alternate with its own
    passes in the same process: ``paired`` is the ratio of their fastest
    passes, which a busy neighbour slows alike. The clean stream shares all
    but the hostile actions' bytes with the class's, so memory is its own.
    """
    clean = stream(CLEAN, events, every, size)
    messages = with_class(clean, name, every, size)
    processor = Processor(load_settings({}))
    for key, value in messages[:200]:  # warm the caches and the matchers as a running worker has
        processor.process(value, key=key)
    elapsed = clean_elapsed = float("inf")
    bad = 0
    for _ in range(PASSES):  # the fastest pass: the others were slowed by a busy neighbour
        took, bad = _pass(processor, messages)
        elapsed = min(elapsed, took)
        if name != CLEAN:
            clean_elapsed = min(clean_elapsed, _pass(processor, clean)[0])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raw_mb = sum(len(v) for _, v in messages) / 1e6
    paired = clean_elapsed / elapsed if name != CLEAN else 1.0
    cost = _cost(processor, messages, every) if name != CLEAN else 1.0
    return {
        "per_s": len(messages) / elapsed,
        "rss_mb": rss,
        "raw_mb": raw_mb,
        "bad": bad,
        "paired": paired,
        "cost": cost,
    }


def _cost(processor: Processor, messages: list[tuple[bytes | None, bytes]], every: int) -> float:
    """Median CPU time of a hostile action over that of a clean one, timed call by call.

    An extra pass, apart from the timed ones (reading the thread's CPU clock
    costs about a microsecond a call); a median is not moved by the calls a
    neighbour or a garbage collection slowed.
    """
    clock = time.thread_time_ns
    hostile_ns: list[int] = []
    clean_ns: list[int] = []
    for i, (key, value) in enumerate(messages):
        start = clock()
        processor.process(value, key=key)
        (hostile_ns if i % every == 0 else clean_ns).append(clock() - start)
    return statistics.median(hostile_ns) / statistics.median(clean_ns)


def process_run(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """:func:`process_one` in a child process, so that each class starts from the same memory."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--events",
            str(args.events),
            "--every",
            str(args.every),
            "--size",
            str(args.size),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout.splitlines()[-1])


def _median(values: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(v[key] for v in values) for key in values[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["worker", "process"], default="worker")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=100, help="one hostile action in this many")
    parser.add_argument(
        "--size", type=int, default=20_000, help="bytes of the classes whose weight is the point"
    )
    parser.add_argument("--classes", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each class; medians are reported")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(process_one(args.child, args.events, args.every, args.size)))
        return 0
    names = args.classes.split(",") if args.classes else sorted(hostile.CLASSES)
    run = worker_run if args.mode == "worker" else process_run
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in [CLEAN, *names]}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # interleaved, so that a slow spell of the machine hits every class
            runs[CLEAN].append(run(CLEAN, args, Path(tmp)))
            for name in names:
                runs[name].append(run(name, args, Path(tmp)))
                print(f"{name}: {runs[name][-1]}", file=sys.stderr, flush=True)
        runs[CLEAN].append(run(CLEAN, args, Path(tmp)))
    results = {name: _median(values) for name, values in runs.items() if name != CLEAN}
    paired = {name: [v.get("paired", 0.0) for v in values] for name, values in runs.items()}
    cost = {name: [v.get("cost", 0.0) for v in values] for name, values in runs.items()}
    best = {name: max(v["per_s"] for v in values) for name, values in runs.items()}
    clean_rate = statistics.median(r["per_s"] for r in runs[CLEAN])
    clean_rss = statistics.median(r["rss_mb"] for r in runs[CLEAN])
    print(f"mode={args.mode} events={args.events} hostile=1/{args.every} size={args.size} runs={args.runs}")
    rates = ", ".join(f"{r['per_s']:.0f}" for r in runs[CLEAN])
    print(f"clean: {rates} records/s (median {clean_rate:.0f}), peak RSS median {clean_rss:.0f} MB")
    head = f"{'class':24} {'records/s':>10} {'ratio':>6} {'best':>5} {'RSS MB':>7} {'ΔRSS':>6} {'raw MB':>7}"
    paired_head = f"  {'paired (range)':>16}  {'cost (range)':>16}" if args.mode == "process" else ""
    print(f"{head} {'bad':>5}  within{paired_head}")
    for name, r in results.items():
        ratio = r["per_s"] / clean_rate
        delta = r["rss_mb"] - clean_rss
        ok = "yes" if ratio >= 0.9 and delta <= 100 else "NO"
        best_ratio = best[name] / best[CLEAN]
        print(
            f"{name:24} {r['per_s']:10.0f} {ratio:6.2f} {best_ratio:5.2f} {r['rss_mb']:7.0f} {delta:+6.0f} "
            f"{r['raw_mb']:7.1f} {r['bad']:5.0f}  {ok:6}"
            + (
                f"  {statistics.median(paired[name]):5.2f} ({min(paired[name]):.2f}-{max(paired[name]):.2f})"
                f"  {statistics.median(cost[name]):5.1f} ({min(cost[name]):.1f}-{max(cost[name]):.1f})"
                if args.mode == "process"
                else ""
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
