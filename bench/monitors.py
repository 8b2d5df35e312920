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

Reported: wall ms per cycle (median, p95, max), CPU ms per cycle (median),
and events and state records per cycle. The machine is shared: the median is
the figure, and the CPU time shows what waiting for the cores added.

    python bench/monitors.py [--monitors 100] [--groups 250] [--cycles 60] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
from collections.abc import Mapping

from pipeline.monitors.evaluate import Evaluator
from pipeline.monitors.model import Group, Monitor

MINUTE = 60_000
T0 = 1_764_288_000_000


def make_monitors(count: int) -> list[Monitor]:
    """``count`` multi-alert monitors, alike but for their options."""
    out = []
    for index in range(count):
        out.append(
            Monitor(
                name=f"monitor_{index:03d}",
                rollup="cart_value_by_country",
                aggregation="avg",
                comparator=">" if index % 2 else "<",
                alert=100.0 if index % 2 else 20.0,
                warn=80.0 if index % 2 else 40.0,
                alert_recovery=(90.0 if index % 2 else 30.0) if index % 3 == 0 else None,
                window_ms=15 * MINUTE,
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


def measure(
    monitors: list[Monitor], source: Synthetic, cycles: int
) -> tuple[list[float], list[float], int, int]:
    """Wall and CPU ms of each cycle, total events and total state records."""
    evaluator = Evaluator(monitors)
    times, cpu, events, states = [], [], 0, 0
    gc.collect()
    for cycle in range(cycles):
        source.cycle = cycle
        start, start_cpu = time.perf_counter(), time.process_time()
        result = evaluator.evaluate(T0 + cycle * MINUTE, source)
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
    args = parser.parse_args()
    monitors = make_monitors(args.monitors)
    print(f"monitor evaluation: {args.monitors} monitors x {args.groups} groups, {args.cycles} cycles")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    medians = {}
    for name, storm in (("steady", False), ("storm", True)):
        source = frames(monitors, args.groups, args.cycles, storm, args.seed)
        times, cpu, events, states = measure(monitors, source, args.cycles)
        wall = times[1:]  # the first cycle creates every group's state
        medians[name] = statistics.median(wall)
        p95 = statistics.quantiles(wall, n=20)[-1]
        print(
            f"  {name:6s} {medians[name]:7.1f} ms/cycle median (p95 {p95:.1f}, "
            f"max {max(wall):.1f}), CPU {statistics.median(cpu[1:]):.1f} ms median; first cycle "
            f"{times[0]:.1f} ms; per cycle {events / args.cycles:,.0f} events, "
            f"{states / args.cycles:,.0f} state records"
        )
    for name, median in medians.items():
        verdict = "within" if median <= 100 else "over"
        print(f"  {name}: {median:.1f} ms per cycle, {verdict} the 100 ms target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
