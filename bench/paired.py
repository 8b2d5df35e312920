"""What the rollups cost, measured side by side: a rollups-on and a rollups-off worker at the same time.

bench/rollups.py runs the two workers one after the other, so each meets the
machine as it is at that moment; on a shared machine that moves its on/off
ratio by about ±0.1 from one run to the next. Here both run at once, each over
its own freshly produced copy of the same traffic (own topic prefix, consumer
group and state folder), and the figure is each worker's CPU time per action
over the span when both were busy: from the later of their first enriched
records to the earlier of their last ones. Whatever else the machine does then,
it does to both.

Rates are not compared: running together, the two workers compete for the
cores and the broker, and the one that waits for acknowledgements more often
(rollups off acknowledges after every batch) loses more of its time to that.
The ratio of CPU per action, off / on, is the throughput ratio the CPU cost
implies for a worker with a core of its own; the target is >= 0.7. With the
rollups on, the span also carries the flushes and merges of earlier actions,
and leaves some of its own to after its end: in a steady backlog these even
out. Which worker starts first alternates between runs.

    python bench/paired.py [--events 150000] [--runs 3] [--spans 30s,1h]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any

from rollups import CpuSampler, bench_env, enriched_stamps, settings_of, summarize, watched_worker

from pipeline.admin import create_topics
from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, publish
from pipeline.rollups.config import parse_duration

MODES = ("on", "off")
#: A shorter common span says little: start-up and the last flush would weigh too much.
MIN_SPAN_S = 5.0


def paired_run(messages: list[Message], first: str, tmp: Path, keep: bool) -> dict[str, float]:
    """Both workers at once over their own copies of ``messages``: CPU µs/action each over the common span."""
    envs = {mode: bench_env(tmp, RUM_ROLLUPS="true" if mode == "on" else "false") for mode in MODES}
    settings = {mode: settings_of(env) for mode, env in envs.items()}
    for mode in MODES:
        asyncio.run(create_topics(settings[mode]))
        summary = asyncio.run(publish(settings[mode], settings[mode].topic("rum.actions.raw"), messages))
        if summary.failed:
            raise RuntimeError(f"{summary.failed} messages were not acknowledged")
    order = (first, *(mode for mode in MODES if mode != first))
    with contextlib.ExitStack() as stack:
        samplers: dict[str, CpuSampler] = {}
        for mode in order:
            log = tmp / f"worker-paired-{mode}-{envs[mode]['RUM_APP_ID']}.log"
            proc = stack.enter_context(watched_worker(envs[mode], log, mode, settings[mode], keep))
            samplers[mode] = stack.enter_context(CpuSampler(proc.pid))

        async def both() -> list[list[int]]:
            return list(
                await asyncio.gather(*(enriched_stamps(settings[mode], len(messages), 600) for mode in MODES))
            )

        stamps = dict(zip(MODES, asyncio.run(both()), strict=True))
        time.sleep(0.1)  # a CPU sample after the last record
    start = max(s[0] for s in stamps.values())
    end = min(s[-1] for s in stamps.values())
    if (end - start) / 1000 < MIN_SPAN_S:
        raise RuntimeError(
            f"the workers were busy together for {(end - start) / 1000:.1f} s only: raise --events"
        )
    result: dict[str, float] = {"span_s": (end - start) / 1000}
    for mode in MODES:
        actions = bisect_right(stamps[mode], end) - bisect_left(stamps[mode], start)
        result[f"{mode}_actions"] = actions
        result[f"{mode}_cpu_us"] = samplers[mode].between(start, end) / actions * 1e6
    result["ratio"] = result["off_cpu_us"] / result["on_cpu_us"]
    return result


def paired_section(events: int, runs: int, seed: int, span: str, tmp: Path, keep: bool) -> dict[str, Any]:
    """``runs`` side-by-side runs over the same traffic dated over ``span``; prints and returns figures."""
    span_s = parse_duration(span)
    now = time.time_ns() // 1_000_000
    generator = TrafficGenerator(seed=seed, start_ms=now - span_s * 1000, span_ms=span_s * 1000)
    messages = [Message(m.key, m.value) for m in generator.messages(events)]
    print(f"actions dated over the last {span}:")
    results = []
    for i in range(runs):
        first = MODES[i % 2]
        run = paired_run(messages, first, tmp, keep)
        results.append(run)
        print(
            f"  run {i + 1} ({first} started first): both busy for {run['span_s']:.1f} s; worker CPU per "
            f"action: on {run['on_cpu_us']:.0f} µs ({run['on_actions']:,.0f} actions), "
            f"off {run['off_cpu_us']:.0f} µs ({run['off_actions']:,.0f}); off/on {run['ratio']:.2f}"
        )
    figures = {name: summarize([r[name] for r in results]) for name in ("on_cpu_us", "off_cpu_us", "ratio")}
    ratio = figures["ratio"]
    on = statistics.median(r["on_cpu_us"] for r in results)
    off = statistics.median(r["off_cpu_us"] for r in results)
    print(
        f"  CPU per action off/on, median of {runs}: {ratio['median']:.2f} "
        f"({ratio['min']:.2f}-{ratio['max']:.2f}); on {on:.0f} µs, off {off:.0f} µs; target >= 0.70: "
        f"{'met' if ratio['median'] >= 0.7 else 'NOT met'}"
    )
    return {"events": events, "span": span, "runs": results, **figures}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=150000, help="actions per worker and run")
    parser.add_argument("--runs", type=int, default=3, help="side-by-side runs per span (medians reported)")
    parser.add_argument(
        "--spans", default="30s,1h", help="comma-separated spans the actions' dates cover, ending now"
    )
    parser.add_argument("--seed", type=int, default=5, help="seed of the generated traffic")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics afterwards")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    spans = [span.strip() for span in args.spans.split(",") if span.strip()]
    if not spans:
        parser.error("--spans: give at least one span, e.g. 30s")
    try:
        for span in spans:
            parse_duration(span)
    except ValueError as exc:
        parser.error(f"--spans: {exc}")
    if args.events < 1 or args.runs < 1:
        parser.error("--events and --runs must be at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped to a file
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        sections = [
            paired_section(args.events, args.runs, args.seed, span, Path(tmp_name), args.keep_topics)
            for span in spans
        ]
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"spans": sections}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
