"""The figures of bench/peers.py from its runs' measurements: no Kafka, no processes.

A run measures every job once over the same actions; this module turns a list
of runs into each job's median and spread, and into the ratios of the worker
to its peers taken run by run (both sides of a ratio measured minutes apart
at most), then formats them as the table bench/peers.py prints.
"""

from __future__ import annotations

import statistics
from typing import Any, NamedTuple

#: The jobs, in the order the table lists them: key -> label.
JOBS: dict[str, str] = {
    "worker": "rum-pipeline worker, exactly once (default)",
    "worker-alo": "rum-pipeline worker, at least once",
    "quix": "Quix Streams app, at least once (its default)",
    "quix-eos": "Quix Streams app, exactly once",
    "passthrough": "aiokafka pass-through, no processing",
    "quix-nodedupe": "Quix Streams app, at least once, no deduplication",
}


class Ratio(NamedTuple):
    """The worker job ``over`` against the job ``under``."""

    key: str
    over: str
    under: str
    label: str


RATIOS: tuple[Ratio, ...] = (
    Ratio("worker/quix", "worker", "quix", "worker / Quix, each with its default guarantee"),
    Ratio("worker/quix-eos", "worker", "quix-eos", "worker / Quix, both exactly once"),
    Ratio("worker-alo/quix", "worker-alo", "quix", "worker / Quix, both at least once"),
    Ratio("worker/quix-nodedupe", "worker", "quix-nodedupe", "worker / Quix without deduplication"),
    Ratio("worker/passthrough", "worker", "passthrough", "worker (exactly once) / pass-through"),
)


def summarize(values: list[float]) -> dict[str, float]:
    """Median and spread of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def measure(stamps: list[int], cpu_seconds: float) -> dict[str, float]:
    """Actions/s and CPU µs per action of one job from its outputs' timestamps (ms) and its CPU time.

    The rate is the number of outputs over the span from the first timestamp
    to the last; ``cpu_seconds`` is the process's CPU time over that span.
    """
    span = (stamps[-1] - stamps[0]) / 1000
    return {
        "per_s": len(stamps) / span if span > 0 else float("inf"),
        "cpu_us": cpu_seconds / len(stamps) * 1e6,
        "seconds": span,
    }


def rotated(jobs: list[str], run: int) -> list[str]:
    """The jobs in the order of run ``run``: each run starts one job later, so none is always first."""
    if not jobs:
        return []
    shift = run % len(jobs)
    return jobs[shift:] + jobs[:shift]


def figures(runs: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Each job's summaries over ``runs``, and each ratio's, taken run by run.

    A ratio is the worker's rate over the peer's (above 1: the worker is
    faster), and the worker's CPU per action over the peer's (below 1: the
    worker spends less). Jobs or ratios missing from every run are left out.
    """
    jobs: dict[str, dict[str, Any]] = {}
    for key, label in JOBS.items():
        measured = [run[key] for run in runs if key in run]
        if measured:
            jobs[key] = {
                "label": label,
                "per_s": summarize([m["per_s"] for m in measured]),
                "cpu_us": summarize([m["cpu_us"] for m in measured]),
            }
    ratios: dict[str, dict[str, Any]] = {}
    for ratio in RATIOS:
        both = [run for run in runs if ratio.over in run and ratio.under in run]
        pairs = [(run[ratio.over], run[ratio.under]) for run in both]
        if pairs:
            ratios[ratio.key] = {
                "label": ratio.label,
                "per_s": summarize([a["per_s"] / b["per_s"] for a, b in pairs]),
                "cpu_us": summarize([a["cpu_us"] / b["cpu_us"] for a, b in pairs]),
            }
    return {"jobs": jobs, "ratios": ratios}


def spread(s: dict[str, float], fmt: str) -> str:
    """ "median (min-max)" of a summary."""
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"


def table(result: dict[str, Any]) -> list[str]:
    """The printed table: one line per job, then one per ratio."""
    width = max(len(label) for label in [*JOBS.values(), *(r.label for r in RATIOS)])
    lines = [f"{'job':{width}}  {'actions/s (min-max)':>24}  {'CPU µs/action (min-max)':>24}"]
    for job in result["jobs"].values():
        rate, cpu = spread(job["per_s"], ",.0f"), spread(job["cpu_us"], ".1f")
        lines.append(f"{job['label']:{width}}  {rate:>24}  {cpu:>24}")
    lines.append(f"{'ratio, run by run':{width}}  {'actions/s':>24}  {'CPU per action':>24}")
    for ratio in result["ratios"].values():
        rate, cpu = spread(ratio["per_s"], ".2f"), spread(ratio["cpu_us"], ".2f")
        lines.append(f"{ratio['label']:{width}}  {rate:>24}  {cpu:>24}")
    return lines
