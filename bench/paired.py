"""What the rollups cost, measured side by side: a rollups-on and a rollups-off worker at the same time.

bench/rollups.py runs the two workers one after the other, so each meets the
machine as it is at that moment; on a shared machine that moves its on/off
ratio by about ±0.1 from one run to the next. Here both run at once, each over
its own freshly produced copy of the same traffic (own topic prefix, consumer
group and state folder), so that whatever else the machine does meets both.
Each worker's CPU time per action is taken over its whole run, as
bench/rollups.py takes it: from its first enriched record to its last, or
with the rollups on to its last rollup or facet-index upsert once every
action's partials are flushed and merged. The rollups-off worker finishes
first; the rollups-on one runs alone for its last seconds.

Rates are not compared: running together, the two workers compete for the
cores and the broker, and need not lose the same share of their time to
that. The ratio of CPU per action, off / on, is the throughput ratio the CPU
cost implies for a worker with a core of its own (the target is a
throughput ratio >= 0.7).

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
from pathlib import Path
from typing import Any

from rollups import (
    CpuSampler,
    bench_env,
    dated_traffic,
    delete_topics,
    enriched_stamps,
    rollups_done,
    settings_of,
    summarize,
    watched_worker,
)

from pipeline.admin import create_topics
from pipeline.produce import Message, publish
from pipeline.rollups.config import parse_duration
from pipeline.topics import RAW

MODES = ("on", "off")
#: Runs that overlap less than this are mostly each worker alone: not side by side.
MIN_TOGETHER_S = 5.0


def paired_run(messages: list[Message], tmp: Path, keep: bool) -> dict[str, float]:
    """Both workers at once over their own copies of ``messages``: CPU µs/action of each over its run."""
    envs = {mode: bench_env(tmp, RUM_ROLLUPS="true" if mode == "on" else "false") for mode in MODES}
    settings = {mode: settings_of(env) for mode, env in envs.items()}
    try:
        for mode in MODES:
            asyncio.run(create_topics(settings[mode]))
            summary = asyncio.run(publish(settings[mode], settings[mode].topic(RAW), messages))
            if summary.failed:
                raise RuntimeError(f"{summary.failed} messages were not acknowledged")
    except BaseException:
        if not keep:
            for mode in MODES:
                asyncio.run(delete_topics(settings[mode]))
        raise
    with contextlib.ExitStack() as stack:
        samplers: dict[str, CpuSampler] = {}
        for mode in MODES:
            log = tmp / f"worker-paired-{mode}-{envs[mode]['RUM_APP_ID']}.log"
            proc = stack.enter_context(watched_worker(envs[mode], log, mode, settings[mode], keep))
            samplers[mode] = stack.enter_context(CpuSampler(proc.pid))

        async def both() -> list[list[int]]:
            return list(
                await asyncio.gather(*(enriched_stamps(settings[mode], len(messages), 600) for mode in MODES))
            )

        stamps = dict(zip(MODES, asyncio.run(both()), strict=True))
        ends = {"on": max(asyncio.run(rollups_done(settings["on"], 120)), stamps["on"][-1])}
        ends["off"] = stamps["off"][-1]
        time.sleep(0.1)  # a CPU sample after the last record
    together = (min(ends.values()) - max(s[0] for s in stamps.values())) / 1000
    if together < MIN_TOGETHER_S:
        raise RuntimeError(f"the workers were busy together for {together:.1f} s only: raise --events")
    result: dict[str, float] = {"together_s": together}
    for mode in MODES:
        result[f"{mode}_s"] = (ends[mode] - stamps[mode][0]) / 1000
        result[f"{mode}_cpu_us"] = (
            samplers[mode].between(stamps[mode][0], ends[mode]) / len(stamps[mode]) * 1e6
        )
    result["ratio"] = result["off_cpu_us"] / result["on_cpu_us"]
    return result


def paired_section(events: int, runs: int, seed: int, span: str, tmp: Path, keep: bool) -> dict[str, Any]:
    """``runs`` side-by-side runs over the same traffic dated over ``span``; prints and returns figures."""
    messages = dated_traffic(events, seed, span)
    print(f"actions dated over the last {span}:")
    results = []
    for i in range(runs):
        run = paired_run(messages, tmp, keep)
        results.append(run)
        print(
            f"  run {i + 1}: worker CPU per action on {run['on_cpu_us']:.0f} µs (over {run['on_s']:.1f} s), "
            f"off {run['off_cpu_us']:.0f} µs (over {run['off_s']:.1f} s), both busy for "
            f"{run['together_s']:.1f} s; off/on {run['ratio']:.2f}"
        )
    figures = {name: summarize([r[name] for r in results]) for name in ("on_cpu_us", "off_cpu_us", "ratio")}
    ratio = figures["ratio"]
    on = statistics.median(r["on_cpu_us"] for r in results)
    off = statistics.median(r["off_cpu_us"] for r in results)
    print(
        f"  CPU per action off/on, median of {runs}: {ratio['median']:.2f} "
        f"({ratio['min']:.2f}-{ratio['max']:.2f}); on {on:.0f} µs, off {off:.0f} µs; "
        f"the throughput ratio this implies >= 0.70: {'yes' if ratio['median'] >= 0.7 else 'no'}"
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
