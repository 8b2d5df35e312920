"""Memory benchmark: does one worker's RSS stay bounded over a long run with rollups on?

N generated actions (dates spread over --span, one day by default, so that
rollup windows keep rolling over) are produced while one `rum-pipeline worker`
(rollups on) processes them. The producer runs in a child process and draws
from the traffic generator lazily, so the benchmark itself stays small.
Every --interval seconds the worker's RSS (VmRSS of /proc/<pid>/status) is
sampled beside the number of enriched records so far (the sum of the end
offsets of the enriched topic) and the number produced so far.

With the config's retention (2d) nothing of a one-day span is ever evicted;
--retention (with --grace) writes a temporary copy of the rollup config with
those values, so that windows are evicted during the run. The config requires
retention >= longest interval + grace: intervals longer than that (the 1d
windows, for --retention 2h) are left out of the copy, and the run says so.

The verdict gives the RSS when 25%, 50%, 75% and 100% of the actions were
enriched; the first quarter counts as warm-up, so growth is measured from 25%.

    python bench/memory.py [--events 1000000] [--rate 0] [--span 1d] [--retention 2h]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from rollups import bench_env, delete_topics, log_problems, settings_of, tail, worker

from pipeline.admin import create_topics
from pipeline.clock import now_ms
from pipeline.consume import make_reader, topic_partitions
from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, publish
from pipeline.rollups.config import default_config_path, parse_duration
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, RAW

MIB = 1024 * 1024
#: Fractions of the events at which the verdict reports the RSS.
MILESTONES = (0.25, 0.5, 0.75, 1.0)


@dataclass
class Sample:
    """One observation of the worker."""

    elapsed: float  #: seconds since the worker started
    produced: int  #: raw actions acknowledged by the broker so far
    enriched: int  #: records on the enriched topic so far
    bad: int  #: records on the bad-row topic so far
    rss_mib: float  #: the worker's resident set size
    hwm_mib: float  #: the worker's peak resident set size so far


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes (empty once it has exited)."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0]) * 1024
    except FileNotFoundError:
        pass
    return values


def rollup_config(tmp: Path, retention: str, grace: str) -> tuple[Path, list[str]]:
    """A copy of the default rollup config with another retention and grace.

    The config requires retention >= longest interval + grace, so intervals the
    retention cannot hold are left out; they are returned as "rollup:interval".
    """
    config = yaml.safe_load(default_config_path().read_text())
    config["retention"] = retention
    config["grace"] = grace
    limit = parse_duration(retention) - parse_duration(grace)
    dropped = []
    for rollup in config["rollups"]:
        kept = [i for i in rollup["intervals"] if parse_duration(i) <= limit]
        dropped += [f"{rollup['name']}:{i}" for i in rollup["intervals"] if i not in kept]
        if not kept:
            raise SystemExit(f"retention {retention} holds none of {rollup['name']}'s intervals")
        rollup["intervals"] = kept
    path = tmp / "rollups-retention.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, dropped


def produce(env: dict[str, str], events: int, seed: int, span_ms: int, rate: float, sent: Any) -> None:
    """Child process: publish ``events`` generated actions, counting acknowledgements in ``sent``."""
    settings = settings_of(env)
    generator = TrafficGenerator(seed=seed, start_ms=now_ms() - span_ms, span_ms=span_ms)
    messages = (Message(m.key, m.value) for m in generator.messages(events))

    def count(n: int) -> None:
        with sent.get_lock():
            sent.value += n

    summary = asyncio.run(publish(settings, settings.topic(RAW), messages, rate=rate, on_sent=count))
    if summary.failed:
        print(f"producer: {summary.failed} messages not acknowledged", file=sys.stderr)


async def watch(
    settings: Settings,
    pid: int,
    alive: Any,
    sent: Any,
    events: int,
    interval: float,
    after: float,
    timeout: float,
) -> list[Sample]:
    """Sample RSS and progress every ``interval`` s until every event is out, then ``after`` s more."""
    consumer = make_reader(settings)
    await consumer.start()
    samples: list[Sample] = []
    try:
        enriched_tps = await topic_partitions(consumer, settings.topic(ENRICHED))
        bad_tps = await topic_partitions(consumer, settings.topic(BAD))
        started = time.monotonic()
        done_at: float | None = None
        print(f"{'elapsed s':>9} {'produced':>10} {'enriched':>10} {'bad':>6} {'RSS MiB':>8} {'peak MiB':>9}")
        while True:
            ends = await consumer.end_offsets([*enriched_tps, *bad_tps])
            status = proc_status(pid)
            sample = Sample(
                elapsed=time.monotonic() - started,
                produced=sent.value,
                enriched=sum(ends[tp] for tp in enriched_tps),
                bad=sum(ends[tp] for tp in bad_tps),
                rss_mib=status.get("VmRSS", 0) / MIB,
                hwm_mib=status.get("VmHWM", 0) / MIB,
            )
            samples.append(sample)
            print(
                f"{sample.elapsed:9.0f} {sample.produced:10,} {sample.enriched:10,} {sample.bad:6,} "
                f"{sample.rss_mib:8.1f} {sample.hwm_mib:9.1f}",
                flush=True,
            )
            if not alive():
                print("the worker exited during the run", file=sys.stderr)
                break
            if done_at is None and sample.enriched + sample.bad >= events:
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= after:
                break
            if sample.elapsed > timeout:
                print(f"timed out after {timeout:.0f} s", file=sys.stderr)
                break
            await asyncio.sleep(max(0.0, started + len(samples) * interval - time.monotonic()))
    finally:
        await consumer.stop()
    return samples


def verdict(samples: list[Sample], events: int) -> dict[str, Any]:
    """RSS at each milestone of enriched events, and the growth after the first quarter."""
    points: dict[str, dict[str, float]] = {}
    for fraction in MILESTONES:
        hit = next((s for s in samples if s.enriched >= fraction * events), None)
        if hit is not None:
            points[f"{fraction:.0%}"] = {
                "elapsed": hit.elapsed,
                "enriched": hit.enriched,
                "rss_mib": hit.rss_mib,
            }
    result: dict[str, Any] = {"milestones": points, "peak_mib": max((s.hwm_mib for s in samples), default=0)}
    if "25%" in points and "100%" in points:
        first, last = points["25%"]["rss_mib"], points["100%"]["rss_mib"]
        result["growth_25_to_100_mib"] = last - first
        result["growth_25_to_100_pct"] = (last - first) / first * 100 if first else 0.0
    if "50%" in points and "100%" in points:
        mid, last = points["50%"]["rss_mib"], points["100%"]["rss_mib"]
        result["growth_50_to_100_mib"] = last - mid
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="actions to produce and process")
    parser.add_argument("--rate", type=float, default=0, help="produce at this many actions/s (0 = flat out)")
    parser.add_argument("--span", default="1d", help="time span of the generated dates (e.g. 1h, 1d)")
    parser.add_argument(
        "--retention",
        default=None,
        help="rollup retention for this run, e.g. 2h (default: the config's, 2d: no eviction in a 1d span)",
    )
    parser.add_argument("--grace", default="1m", help="rollup grace, used with --retention")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--after", type=float, default=10.0, help="seconds to keep sampling once all are out")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated traffic")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics afterwards")
    parser.add_argument("--json", type=Path, default=None, help="also write the samples to this JSON file")
    parser.add_argument("--log", type=Path, default=None, help="keep a copy of the worker's log here")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped to a file
    span_ms = parse_duration(args.span) * 1000

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        extra = {"RUM_ROLLUPS": "true"}
        retention = "2d, from config/rollups.yaml"
        if args.retention:
            path, dropped = rollup_config(tmp, args.retention, args.grace)
            extra["RUM_ROLLUPS_CONFIG"] = str(path)
            retention = f"{args.retention} (grace {args.grace})"
            if dropped:
                retention += f", without the intervals it cannot hold: {', '.join(dropped)}"
        env = bench_env(tmp, **extra)
        settings = settings_of(env)
        asyncio.run(create_topics(settings))
        print(
            f"{args.events:,} actions over a {args.span} span, rate {args.rate or 'unlimited'}, "
            f"retention {retention}"
        )
        sent = multiprocessing.Value("q", 0)
        producer = multiprocessing.Process(
            target=produce, args=(env, args.events, args.seed, span_ms, args.rate, sent), daemon=True
        )
        log = tmp / "worker.log"
        try:
            with worker(env, log) as proc:
                producer.start()
                samples = asyncio.run(
                    watch(
                        settings,
                        proc.pid,
                        lambda: proc.poll() is None,
                        sent,
                        args.events,
                        args.interval,
                        args.after,
                        args.timeout,
                    )
                )
                exit_code = proc.poll()
            if exit_code is not None:
                print(f"worker exit code {exit_code}; log tail:\n{tail(log)}", file=sys.stderr)
            for line in log_problems(log):
                print(f"  [worker log] {line}")
            if args.log:
                shutil.copyfile(log, args.log)
        finally:
            if producer.is_alive():
                producer.terminate()
            producer.join(30)
            if not args.keep_topics:
                asyncio.run(delete_topics(settings))

    result = verdict(samples, args.events)
    print("verdict: RSS when this share of the actions was enriched (the first 25% is warm-up)")
    for name, point in result["milestones"].items():
        print(
            f"  {name:>5}  {point['enriched']:>10,} enriched at {point['elapsed']:6.0f} s"
            f"   RSS {point['rss_mib']:7.1f} MiB"
        )
    print(f"  peak RSS {result['peak_mib']:.1f} MiB")
    if "growth_25_to_100_mib" in result:
        print(
            f"  growth 25% -> 100%: {result['growth_25_to_100_mib']:+.1f} MiB "
            f"({result['growth_25_to_100_pct']:+.1f}%); "
            f"50% -> 100%: {result['growth_50_to_100_mib']:+.1f} MiB"
        )
    if args.json:
        report = {"args": vars(args), "verdict": result}
        report["samples"] = [asdict(s) for s in samples]
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
