"""The whole benchmark suite in one command (`make bench`); figures in bench/results.md.

Runs, in turn, each as its own process with --json, and collects their figures:

  enrich    bench/enrich.py: hot-path µs/event; one worker's actions/s against
            a plain aiokafka pass-through of the same messages (ratio)
  rollups   bench/rollups.py without its latency part: one worker, rollups on vs off (ratio)
  latency   bench/rollups.py with only its latency part, --runs times:
            produce -> first rollup upsert, p50 and p99
  scale     bench/scale.py: two worker processes vs one, same input (ratio)
  intake    bench/intake.py, when it exists, --runs times: events/s through the HTTP intake
  query     bench/query.py: the rollup view's catch-up rate over 1,000,000 rollup records,
            its memory per key, and the p99 of a rolling-1d query over 250 groups
  paired    bench/paired.py: a rollups-on and a rollups-off worker at once, worker CPU
            per action off / on (ratio), over actions dated over 30 s and over 1 h
            (30 s only with --quick)
  monitors  bench/monitors.py: monitor evaluation, 100 monitors x 250 groups per cycle,
            from made-up values (steady and storm) and from a rollup view (serve's Source)
  peers     bench/peers.py: the worker (exactly once, and at least once) against a
            Quix Streams app running the same processing and a plain aiokafka
            pass-through, rollups off: actions/s, CPU per action, ratios

Every figure is the median of --runs runs with the spread (min-max). The
machine (cores, RAM, Python, Kafka version), the date and the git commit head
the report. Benchmarks share the machine's cores with the broker and anything
else running: compare the ratios, measured in the same run, not absolute rates.
Each step's output is kept in bench/logs/<step>.log.

    python bench/suite.py [--runs 3] [--quick] [--only enrich,scale] [--output bench/results.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline.docblocks import wrap

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable


@dataclass
class Step:
    """One benchmark process (or --runs of them): its command lines and where its figures go."""

    name: str
    script: str
    args: Callable[[argparse.Namespace], list[str]]
    repeat: bool = False  # run it --runs times (the script measures once per call)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def steps() -> list[Step]:
    """The suite, in order."""
    return [
        Step(
            "enrich",
            "enrich.py",
            lambda a: (
                ["--runs", str(a.runs)]
                + (["--events", "5000", "--broker-events", "10000"] if a.quick else [])
            ),
        ),
        Step(
            "rollups",
            "rollups.py",
            lambda a: ["--runs", str(a.runs), "--rate", "0"] + (["--events", "8000"] if a.quick else []),
        ),
        Step(
            "latency",
            "rollups.py",
            lambda a: ["--events", "0"] + (["--seconds", "5"] if a.quick else []),
            repeat=True,
        ),
        Step(
            "scale", "scale.py", lambda a: ["--runs", str(a.runs)] + (["--events", "8000"] if a.quick else [])
        ),
        Step("intake", "intake.py", lambda a: [], repeat=True),
        Step(
            "paired",
            "paired.py",
            # The workers must overlap for a few seconds: fewer actions than this is no pairing.
            lambda a: ["--runs", str(a.runs)] + (["--events", "60000", "--spans", "30s"] if a.quick else []),
        ),
        Step("query", "query.py", lambda a: ["--records", "100000", "--groups", "50"] if a.quick else []),
        Step("monitors", "monitors.py", lambda a: ["--cycles", "20"] if a.quick else []),
        Step(
            "peers", "peers.py", lambda a: ["--runs", str(a.runs)] + (["--events", "8000"] if a.quick else [])
        ),
    ]


#: The heading of each step's table in bench/results.md.
TITLES = {
    "enrich": "Enrichment: hot path and one worker against a pass-through",
    "rollups": "Rollups: one worker, rollups on against off",
    "latency": "Latency: produce to first rollup upsert",
    "scale": "Scaling: two worker processes against one",
    "intake": "HTTP intake",
    "paired": "Rollups on and off side by side",
    "query": "Rollup view and queries",
    "monitors": "Monitor evaluation",
    "peers": "The worker against a Quix Streams app and a pass-through",
}


def run_step(step: Step, args: argparse.Namespace, logs: Path, progress: Progress, task: Any) -> None:
    """Run ``step`` (once or --runs times), streaming its output to its log and the progress line."""
    script = BENCH / step.script
    if not script.exists():
        step.error = "not run"
        return
    started = time.monotonic()
    calls = args.runs if step.repeat else 1
    with open(logs / f"{step.name}.log", "w") as log, tempfile.TemporaryDirectory() as tmp:
        for call in range(calls):
            out = Path(tmp) / f"{call}.json"
            command = [PY, str(script), *step.args(args), "--json", str(out)]
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            proc = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()  # so that `tail -f bench/logs/<step>.log` follows it
                if line.strip():
                    where = f" ({call + 1}/{calls})" if calls > 1 else ""
                    progress.update(task, description=f"[bold]{step.name}[/]{where}: {line.strip()[:70]}")
            if proc.wait() != 0 or not out.exists():
                step.error = f"failed (exit {proc.returncode}; see bench/logs/{step.name}.log)"
                break
            step.outputs.append(json.loads(out.read_text()))
    step.seconds = time.monotonic() - started


# -- figures ----------------------------------------------------------------------------------


def spread(values: list[float], fmt: str, unit: str = "") -> str:
    """ "median unit (min-max)" of a list of measurements."""
    med = statistics.median(values)
    return f"{med:{fmt}}{unit} ({min(values):{fmt}}-{max(values):{fmt}})"


def summary(s: dict[str, float], fmt: str, unit: str = "") -> str:
    """The same from a {"median","min","max"} summary written by a benchmark script."""
    return f"{s['median']:{fmt}}{unit} ({s['min']:{fmt}}-{s['max']:{fmt}})"


def rows(by_name: dict[str, Step], runs: int) -> dict[str, list[tuple[str, str, str]]]:
    """(figure, value, how) rows of the results tables, by step; a step that did not run says so."""
    tables: dict[str, list[tuple[str, str, str]]] = {step.name: [] for step in steps()}

    def missing(name: str, figures: list[str]) -> None:
        for figure in figures:
            tables[name].append((figure, by_name[name].error or "not run", ""))

    out = tables["enrich"]
    enrich = by_name["enrich"]
    if enrich.outputs:
        e = enrich.outputs[0]
        hot = e["hot_path_us_per_event"]
        out.append(
            (
                "hot path (decode, validate, enrich, encode)",
                summary(hot["optimised"], ".1f", " µs/event"),
                "bench/enrich.py, in one process",
            )
        )
        if "broker" in e:
            b = e["broker"]
            n = f"{b['events']:,} actions"
            out.append(
                (
                    "one worker, rollups off",
                    summary(b["worker_per_s"], ",.0f", " actions/s"),
                    f"bench/enrich.py, {n}",
                )
            )
            out.append(
                (
                    "aiokafka pass-through, same messages",
                    summary(b["passthrough_per_s"], ",.0f", " actions/s"),
                    "the practical ceiling",
                )
            )
            out.append(
                ("**one worker / pass-through**", f"**{summary(b['ratio'], '.2f')}**", "ratio, same run")
            )
    else:
        missing("enrich", ["hot path", "one worker / pass-through"])

    out = tables["rollups"]
    rollups = by_name["rollups"]
    if rollups.outputs and "throughput" not in rollups.outputs[0] and rollups.outputs[0].get("ratio"):
        # Only the headline figures (medians) are there, without their spread.
        h = rollups.outputs[0]
        out.append(("one worker, rollups on", f"{h['on_per_s']:,.0f} actions/s", "bench/rollups.py"))
        out.append(("one worker, rollups off", f"{h['off_per_s']:,.0f} actions/s", "same traffic, same run"))
        out.append(("**rollups on / off**", f"**{h['ratio']:.2f}**", "ratio, same run"))
    elif rollups.outputs:
        t = rollups.outputs[0]["throughput"]
        n = f"{t['events']:,} actions" + (f" dated over {t['span']}" if "span" in t else "")
        out.append(
            ("one worker, rollups on", summary(t["on whole"], ",.0f", " actions/s"), f"bench/rollups.py, {n}")
        )
        out.append(
            (
                "one worker, rollups off",
                summary(t["off whole"], ",.0f", " actions/s"),
                "same traffic, same run",
            )
        )
        out.append(("**rollups on / off**", f"**{summary(t['ratio whole'], '.2f')}**", "ratio, same run"))
        for other in rollups.outputs[0].get("throughput_spans", [])[1:]:
            out.append(
                (
                    f"rollups on / off, actions dated over {other['span']}",
                    summary(other["ratio whole"], ".2f"),
                    f"the same {other['events']:,} actions spread thinly over more windows",
                )
            )
    else:
        missing("rollups", ["rollups on / off"])

    out = tables["latency"]
    latency = [
        o["latency"] for o in by_name["latency"].outputs if "upsert_timestamp_ms" in o.get("latency", {})
    ]
    headlines = [o for o in by_name["latency"].outputs if o.get("latency_p50_s") is not None]
    if not latency and headlines:
        p50 = [o["latency_p50_s"] * 1000 for o in headlines]
        p99 = [o["latency_p99_s"] * 1000 for o in headlines]
        out.append(("produce → first rollup upsert, p50", spread(p50, ",.0f", " ms"), "bench/rollups.py"))
        out.append(
            ("produce → first rollup upsert, p99", spread(p99, ",.0f", " ms"), "median of the runs' p99")
        )
    elif latency:
        rate = latency[0]["rate"]
        how = f"bench/rollups.py, probes at {rate:,.0f}/s, {len(latency)} runs"
        p50 = [x["upsert_timestamp_ms"]["p50"] for x in latency]
        p99 = [x["upsert_timestamp_ms"]["p99"] for x in latency]
        out.append(("produce → first rollup upsert, p50", spread(p50, ",.0f", " ms"), how))
        out.append(
            ("produce → first rollup upsert, p99", spread(p99, ",.0f", " ms"), "median of the runs' p99")
        )
    else:
        missing("latency", ["produce → rollup latency p50/p99"])

    out = tables["scale"]
    scale = by_name["scale"]
    if scale.outputs:
        s = scale.outputs[0]
        mode = "on" if s["rollups"] else "off"
        how = f"bench/scale.py, {s['events']:,} actions, rollups {mode}"
        out.append(("one worker", summary(s["one"], ",.0f", " actions/s"), how))
        out.append(
            (
                "two worker processes",
                summary(s["two"], ",.0f", " actions/s"),
                f"broker and workers shared {s['shared_cores']} cores",
            )
        )
        out.append(
            (
                "**two workers / one**",
                f"**{summary(s['ratio'], '.2f')}**",
                f"ratio, same run; later half alone {summary(s['ratio_steady'], '.2f')}",
            )
        )
    else:
        missing("scale", ["two workers / one"])

    out = tables["intake"]
    intake = by_name["intake"].outputs
    if intake:
        events = [o["events_per_s"] for o in intake]
        requests = [o["requests_per_s"] for o in intake]
        p99 = [o["p99_ms"] for o in intake]
        acked = [o["acknowledged"] == o["in_kafka"] for o in intake]
        complete = "yes" if all(acked) else "NO"
        how = f"bench/intake.py, {len(intake)} runs; every acknowledged event in Kafka: {complete}"
        out.append(("intake, events/s", spread(events, ",.0f", " events/s"), how))
        ratios = [o["ratio_to_direct"] for o in intake if isinstance(o.get("ratio_to_direct"), int | float)]
        if ratios:
            out.append(
                ("**intake / direct aiokafka producer**", f"**{spread(ratios, '.2f')}**", "ratio, same run")
            )
        out.append(
            (
                "intake, requests/s",
                spread(requests, ",.0f", " requests/s"),
                f"p99 {spread(p99, ',.0f', ' ms')}",
            )
        )
    else:
        missing("intake", ["intake events/s"])

    out = tables["paired"]
    paired = by_name["paired"]
    if paired.outputs:
        for section in paired.outputs[0]["spans"]:
            on, off = section["on_cpu_us"]["median"], section["off_cpu_us"]["median"]
            out.append(
                (
                    f"**rollups on / off, side by side** (worker CPU off / on), dated over {section['span']}",
                    f"**{summary(section['ratio'], '.2f')}**",
                    f"bench/paired.py, both workers at once, {section['events']:,} actions each; "
                    f"{on:.0f} µs on, {off:.0f} off",
                )
            )
    else:
        missing("paired", ["rollups on / off side by side"])

    out = tables["query"]
    query = by_name["query"]
    if query.outputs:
        q = query.outputs[0]
        out.append(
            (
                "view catch-up",
                f"{q['catch_up_per_s']:,.0f} records/s",
                f"bench/query.py, {q['records']:,} records",
            )
        )
        for kind, size in q["memory_per_key_bytes"].items():
            out.append((f"view memory per key, {kind}", f"{size:,.0f} bytes", "tracemalloc, the store's own"))
        for what, f in q["query"].items():
            out.append(
                (f"rolling-1d query, {what}", f"p99 {f['p99_ms']:.1f} ms (p50 {f['p50_ms']:.1f})",
                 f"{f['groups']} groups, {f['windows']} windows, cached (CPU time p99 "
                 f"{f.get('cpu_p99_ms', 0):.1f} ms); on their first use "
                 f"p99 {f.get('first_pass_p99_ms', 0):.0f} ms, the very first query "
                 f"{f.get('first_query_ms', 0):.0f} ms")
            )  # fmt: skip
        after = q.get("after_caught_up")
        if after:
            out.append(
                ("rolling-1d query right after the view caught up, every aggregation",
                 f"p99 {after['p99_ms']:.1f} ms (p50 {after['p50_ms']:.1f})",
                 f"the same queries issued one after the other as soon as the reader reported caught "
                 f"up, while it builds window columns in the background "
                 f"({after['queries_that_built_windows']} of them built windows; "
                 f"the first {after['first_query_ms']:.0f} ms); "
                 + (f"days, hours and rolling edges built {after['rolling_s']:.1f} s after caught up, "
                    if after.get("rolling_s") is not None else "")
                 + f"every window built "
                 f"{after['warm_s']:.1f} s after caught up ({after['warm_windows']:,} windows, "
                 f"{after['warm_cache_bytes'] / 1e6:.0f} MB)")
            )  # fmt: skip
        for order, f in q.get("moving_clock", {}).items():
            out.append(
                (f"rolling last 1d at a clock moving a minute a query, warmed {order}",
                 f"p99 {f['p99_ms']:.1f} ms (p50 {f['p50_ms']:.1f})",
                 f"every aggregation; the view warmed between two minutes, as a live reader does; "
                 f"{f['queries_that_built_windows']} of them built windows (the slowest "
                 f"{f['max_ms']:.0f} ms); CPU time p99 {f['cpu_p99_ms']:.1f} ms")
            )  # fmt: skip
    else:
        missing("query", ["view catch-up", "rolling-1d query"])

    out = tables["monitors"]
    monitors = by_name["monitors"]
    if monitors.outputs:
        m = monitors.outputs[0]
        size = f"{m['monitors']} monitors × {m['groups']} groups"
        labels = {
            "steady": "cycle, values made in advance, a few state changes",
            "storm": "cycle, values made in advance, every group changes state",
            "serve": "cycle, values read from a rollup view (serve's Source) and evaluated",
        }
        for load, f in m["loads"].items():
            out.append(
                (f"{size}, {labels.get(load, load)}",
                 f"{f['median_ms']:.1f} ms per cycle, median of the cycles (p95 {f['p95_ms']:.1f}); "
                 f"CPU {f['cpu_ms']:.1f} ms",
                 f"bench/monitors.py; {f['events_per_cycle']:,.0f} events per cycle; target ≤ 100 ms")
            )  # fmt: skip
    else:
        missing("monitors", ["monitor evaluation cycle"])

    out = tables["peers"]
    peers = by_name["peers"]
    if peers.outputs:
        out.extend(peer_rows(peers.outputs[0]))
    else:
        missing("peers", ["worker / Quix Streams", "worker / pass-through"])
    return tables


#: The ratios of bench/peers.py that the worker's speed is judged by (shown in bold).
HEADLINE_RATIOS = ("worker/quix", "worker/passthrough")


def peer_rows(p: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The rows of the peers table from bench/peers.py's figures: each job, then each ratio."""
    out = []
    n = f"{p['events']:,} actions, rollups off"
    for job in p["jobs"].values():
        how = f"bench/peers.py, {n}" if not out else "same actions, same run"
        rate, cpu = summary(job["per_s"], ",.0f", " actions/s"), summary(job["cpu_us"], ".0f", " µs")
        out.append((job["label"], f"{rate}; CPU per action {cpu}", how))
    for key, ratio in p["ratios"].items():
        bold = key in HEADLINE_RATIOS
        rate, cpu = summary(ratio["per_s"], ".2f"), summary(ratio["cpu_us"], ".2f")
        out.append(
            (
                f"**{ratio['label']}**" if bold else ratio["label"],
                f"**{rate}**" if bold else rate,
                f"actions/s ratio, same run; CPU per action, worker / peer: {cpu}",
            )
        )
    return out


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    mem = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    kb = re.search(r"MemTotal:\s+(\d+)", mem)
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpu)
    pom = (ROOT / "broker" / "pom.xml").read_text()
    kafka = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return {
        "cores": str(os.cpu_count()),
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "ram": f"{int(kb.group(1)) / 1024 / 1024:.1f} GiB" if kb else "unknown",
        "python": platform.python_version(),
        "kafka": f"Apache Kafka {kafka.group(1)}" if kafka else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD") + dirty,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def write_results(
    path: Path,
    tables: dict[str, list[tuple[str, str, str]]],
    host: dict[str, str],
    args: argparse.Namespace,
    minutes: float,
) -> None:
    """bench/results.md: the machine, then one table per step, each between bench markers.

    The markers (``<!-- bench:STEP -->``) let the docs include a step's table
    verbatim; bench/docs_sync.py copies them there and tests/test_docs.py checks
    that the copies agree with this file.
    """
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` (bench/suite.py --runs {args.runs}{' --quick' if args.quick else ''}), "
        f"{minutes:.0f} min, {host['date']}, commit {host['commit']}.",
        "",
        f"Machine: {host['cores']} cores ({host['cpu']}), {host['ram']} RAM, {host['os']}, "
        f"Python {host['python']}, {host['kafka']} (single local broker on the same machine). "
        f"Load average when the suite started: {host['load']}. The broker, the workers and the "
        "benchmark processes share these cores with whatever else runs: absolute rates are noisy, "
        "compare the ratios (both sides measured in the same run).",
        "",
    ]
    for name, table in tables.items():
        body = "\n".join(
            [
                f"| figure (median of {args.runs}, min-max) | value | how |",
                "|---|---|---|",
                *(f"| {figure} | {value} | {how} |" for figure, value, how in table),
            ]
        )
        lines += [f"## {TITLES.get(name, name)}", "", wrap("bench", name, body), ""]
    lines += ["Each step's full output is in bench/logs/ (not committed).", ""]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per figure; medians and min-max are reported"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: checks the suite works, figures mean little"
    )
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated steps to run (enrich, rollups, latency, scale, intake, paired, query, "
        "monitors, peers)",
    )
    parser.add_argument("--output", type=Path, default=BENCH / "results.md", help="where the report goes")
    parser.add_argument("--json", type=Path, default=None, help="also write every step's raw figures here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    suite = steps()
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        unknown = wanted - {s.name for s in suite}
        if unknown:
            parser.error(f"unknown step(s): {', '.join(sorted(unknown))}")
        for step in suite:
            if step.name not in wanted:
                step.error = "not run (--only)"
    logs = BENCH / "logs"
    logs.mkdir(exist_ok=True)
    host = machine()
    console = Console()
    console.print(
        f"benchmark suite: {host['cores']} cores, load {host['load']}, "
        f"commit {host['commit']}, --runs {args.runs}"
    )
    started = time.monotonic()
    todo = [s for s in suite if s.error is None]
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        overall = progress.add_task("[bold]suite[/]", total=len(todo))
        for step in todo:
            task = progress.add_task(f"[bold]{step.name}[/]: starting", total=None)
            run_step(step, args, logs, progress, task)
            verdict = step.error or f"done in {step.seconds:.0f} s"
            progress.update(task, description=f"[bold]{step.name}[/]: {verdict}")
            progress.stop_task(task)
            progress.advance(overall)
    minutes = (time.monotonic() - started) / 60
    tables = rows({s.name: s for s in suite}, args.runs)
    write_results(args.output, tables, host, args, minutes)
    if args.output.resolve() == (BENCH / "results.md").resolve():
        # The docs include these tables between markers: bring them up to date with the new figures.
        subprocess.run([PY, str(BENCH / "docs_sync.py")], cwd=ROOT, check=False)
    if args.json:
        args.json.write_text(json.dumps({"machine": host, **{s.name: s.outputs for s in suite}}, indent=2))
    console.print(args.output.read_text(), markup=False, highlight=False)
    failed = [s.name for s in suite if s.error and not s.error.startswith("not run")]
    if failed:
        console.print(f"failed: {', '.join(failed)} (see bench/logs/)", style="red")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
