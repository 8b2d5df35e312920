"""Monitor evaluation cost: 100 monitors x 250 groups per cycle, offline (no broker, no view).

The evaluator (pipeline.monitors.evaluate) runs cycle after cycle on values
from a synthetic Source; the values of every cycle are made before the clock
starts, so what is measured is the state machine and the records it emits,
not the query that will feed it in ``serve``. Target: <= 100 ms per cycle.

Two loads, each over --cycles cycles one minute apart:

- steady: each group's value walks randomly around its monitor's thresholds,
  so a few groups change state per cycle (the normal case); some groups fall
  silent now and then, and monitors carry warn, recovery, no_data and renotify;
- storm: every group crosses the alert threshold one way or the other at every
  cycle, so every (monitor, group) emits an event and a state record: the worst case.

A third load, ``serve``, is what a cycle costs in ``rum-pipeline serve``: the
values are read from a rollup view (pipeline.view.store.ViewStore) holding
15 one-minute windows for each group, through the Source serve uses
(pipeline.monitors.source.ViewSource: cover the range with windows, merge each
group's entries), then evaluated; the records are not written (Kafka is not
part of this figure).

Reported: wall ms per cycle (median, p95, max), CPU ms per cycle (median),
and events and state records per cycle. The machine is shared: the median is
the figure, and the CPU time shows what waiting for the cores added.

    python bench/monitors.py [--monitors 100] [--groups 250] [--cycles 60] [--seed 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.monitors.evaluate import Evaluator, Source
from pipeline.monitors.model import Group, Monitor
from pipeline.monitors.source import ViewSource
from pipeline.view.catalog import Catalog
from pipeline.view.request import RollupInfo
from pipeline.view.store import ViewStore

MINUTE = 60_000
T0 = 1_764_288_000_000


def make_monitors(count: int) -> list[Monitor]:
    """``count`` multi-alert monitors: 9 queries (avg, max, min over 5, 10, 15 minutes), varied options."""
    out = []
    for index in range(count):
        out.append(
            Monitor(
                name=f"monitor_{index:03d}",
                rollup="cart_value_by_country",
                aggregation=("avg", "max", "min")[index % 3],
                comparator=">" if index % 2 else "<",
                alert=100.0 if index % 2 else 20.0,
                warn=80.0 if index % 2 else 40.0,
                alert_recovery=(90.0 if index % 2 else 30.0) if index % 3 == 0 else None,
                window_ms=(5, 10, 15)[index // 3 % 3] * MINUTE,
                group_by=("geo.country",),
                no_data_ms=10 * MINUTE if index % 4 == 0 else None,
                renotify_ms=30 * MINUTE if index % 5 == 0 else None,
            )
        )
    return out


class Synthetic:
    """A Source answering from values made in advance: ``frames[cycle][monitor]``."""

    def __init__(self, frames: list[dict[str, dict[Group, float | None]]]) -> None:
        self.frames = frames
        self.cycle = 0

    def values(self, monitor: Monitor, start_ms: int, end_ms: int) -> Mapping[Group, float | None]:
        return self.frames[self.cycle][monitor.name]


def frames(monitors: list[Monitor], groups: int, cycles: int, storm: bool, seed: int) -> Synthetic:
    """The values of every cycle: random walks (steady) or alternating crossings (storm)."""
    rng = random.Random(seed)
    keys: list[Group] = [(("geo.country", f"C{g:03d}"),) for g in range(groups)]
    level = {(m.name, k): rng.uniform(0, 120) for m in monitors for k in keys}
    silent_until = dict.fromkeys(level, -1)
    out = []
    for cycle in range(cycles):
        frame: dict[str, dict[Group, float | None]] = {}
        for monitor in monitors:
            high = (cycle % 2 == 0) == (monitor.comparator == ">")
            values: dict[Group, float | None] = {}
            for key in keys:
                if storm:
                    values[key] = 150.0 if high else 0.0
                    continue
                slot = (monitor.name, key)
                if rng.random() < 0.002:  # a group falls silent for 5 to 20 cycles
                    silent_until[slot] = cycle + rng.randint(5, 20)
                if cycle < silent_until[slot]:
                    values[key] = None
                    continue
                level[slot] = min(200.0, max(0.0, level[slot] + rng.gauss(0, 3)))
                values[key] = level[slot]
            frame[monitor.name] = values
        out.append(frame)
    return Synthetic(out)


def view_source(monitors: list[Monitor], groups: int, seed: int) -> ViewSource:
    """A ViewSource over a store with 15 one-minute windows before T0 for each of ``groups`` countries."""
    rng = random.Random(seed)
    rollup = monitors[0].rollup
    store = ViewStore()
    for minute in range(15):
        start = T0 - (minute + 1) * MINUTE
        for g in range(groups):
            values = [rng.uniform(0, 120) for _ in range(3)]
            store.apply_rollup_record(
                {
                    "rollup": rollup,
                    "interval": "1m",
                    "window_start": start,
                    "window_end": start + MINUTE,
                    "group": {"geo.country": f"C{g:03d}"},
                    "aggregations": {
                        **{"count": 3, "sum": sum(values), "avg": sum(values) / 3},
                        **{"min": min(values), "max": max(values)},
                    },
                    "final": True,
                }
            )
    info = RollupInfo(rollup, (60, 3600, 86400), ("geo.country",), ("count", "sum", "avg", "min", "max"))
    return ViewSource(store, Catalog({rollup: info}, ()))


def measure(
    monitors: list[Monitor], source: Source, cycles: int, step_ms: int = MINUTE
) -> tuple[list[float], list[float], int, int]:
    """Wall and CPU ms of each cycle, total events and total state records."""
    evaluator = Evaluator(monitors)
    times, cpu, events, states = [], [], 0, 0
    gc.collect()
    for cycle in range(cycles):
        if isinstance(source, Synthetic):
            source.cycle = cycle
        start, start_cpu = time.perf_counter(), time.process_time()
        if isinstance(source, ViewSource):
            source.new_cycle()  # as serve does: each cycle reads the view afresh
        result = evaluator.evaluate(T0 + cycle * step_ms, source)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        events += len(result.events)
        states += len(result.states)
    return times, cpu, events, states


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--monitors", type=int, default=100)
    parser.add_argument("--groups", type=int, default=250)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    monitors = make_monitors(args.monitors)
    print(f"monitor evaluation: {args.monitors} monitors x {args.groups} groups, {args.cycles} cycles")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    medians: dict[str, float] = {}
    figures: dict[str, Any] = {"monitors": args.monitors, "groups": args.groups, "loads": {}}
    loads: list[tuple[str, Source, int]] = [
        ("steady", frames(monitors, args.groups, args.cycles, False, args.seed), MINUTE),
        ("storm", frames(monitors, args.groups, args.cycles, True, args.seed), MINUTE),
        # Cycles a second apart: the same 15 minutes of the view, as between two window ends.
        ("serve", view_source(monitors, args.groups, args.seed), 1000),
    ]
    for name, source, step in loads:
        times, cpu, events, states = measure(monitors, source, args.cycles, step)
        wall = times[1:]  # the first cycle creates every group's state
        medians[name] = statistics.median(wall)
        p95 = statistics.quantiles(wall, n=20)[-1]
        print(
            f"  {name:6s} {medians[name]:7.1f} ms/cycle median (p95 {p95:.1f}, "
            f"max {max(wall):.1f}), CPU {statistics.median(cpu[1:]):.1f} ms median; first cycle "
            f"{times[0]:.1f} ms; per cycle {events / args.cycles:,.0f} events, "
            f"{states / args.cycles:,.0f} state records"
        )
        figures["loads"][name] = {
            "median_ms": medians[name],
            "p95_ms": p95,
            "cpu_ms": statistics.median(cpu[1:]),
            "events_per_cycle": events / args.cycles,
            "states_per_cycle": states / args.cycles,
        }
    for name, median in medians.items():
        verdict = "within" if median <= 100 else "over"
        print(f"  {name}: {median:.1f} ms per cycle, {verdict} the 100 ms target")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
