"""Chaos suite: failure scenarios on a real broker, each checked against ground truth.

Scenarios (tests/chaos_scenarios.py and tests/chaos_geoip.py hold them; tests/integration/test_chaos.py
runs them at reduced size in `make test`):

  kill     two workers; a random one is SIGKILLed at a random moment, --kills times, and restarted
  broker   the broker is stopped for --downtime s and started again mid-stream, --outages times;
           workers ride it out or exit and are restarted (as a supervisor would)
  rebalance  a worker joins mid-stream, then the oldest leaves, --cycles times
  geoip    the GeoIP file is replaced (renamed over) while workers run, --swaps times

After each: the latest rollup and facet-index upserts equal ground truth computed
from the raw topic, every record validates against its schema, and every raw
offset appears as pipeline.source of an enriched action or source of a bad row.

The broker scenario stops and restarts the broker, so it only runs against a
broker scripts/broker.sh started on kafka.port (RUM_KAFKA__PORT) with its state in
RUM_BROKER_DIR: `make chaos` starts its own (port 19092, .broker-chaos), never
the one on 9092 others use.

    python bench/chaos.py [--scenarios kill,broker,rebalance,geoip] [--actions 100000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scenarios live with the tests, which import as `tests.*`

from rich.console import Console  # noqa: E402
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from tests import chaos_scenarios as scenarios  # noqa: E402
from tests.chaos_geoip import geoip_swap  # noqa: E402
from tests.chaos_helpers import LocalBroker  # noqa: E402
from tests.kafka_helpers import EXTERNAL_BOOTSTRAP, PORT  # noqa: E402

NAMES = ("kill", "broker", "rebalance", "geoip")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenarios", default=",".join(NAMES), help="comma-separated subset of: " + ", ".join(NAMES)
    )
    parser.add_argument("--actions", type=int, default=100_000, help="actions per scenario (geoip: half)")
    parser.add_argument("--rate", type=float, default=2000, help="actions/s produced while disturbing")
    parser.add_argument("--kills", type=int, default=6, help="kill -9s in the kill scenario")
    parser.add_argument("--outages", type=int, default=2, help="broker stops in the broker scenario")
    parser.add_argument("--downtime", type=float, default=10, help="seconds the broker stays down")
    parser.add_argument("--cycles", type=int, default=3, help="join/leave cycles in the rebalance scenario")
    parser.add_argument("--swaps", type=int, default=3, help="GeoIP file swaps")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the disruption moments")
    parser.add_argument("--check-timeout", type=float, default=300, help="seconds to wait for exact rollups")
    parser.add_argument("--keep-topics", action="store_true", help="keep each scenario's topics afterwards")
    parser.add_argument("--json", type=Path, default=None, help="also write the outcomes to this JSON file")
    args = parser.parse_args()
    chosen = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")

    console = Console(width=None if sys.stdout.isatty() else 120)
    # The producer's client reports every failed attempt while the broker is down: expected here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    broker = LocalBroker(PORT, ROOT / os.environ.get("RUM_BROKER_DIR", ".broker"))
    bootstrap = EXTERNAL_BOOTSTRAP or broker.bootstrap
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    console.print(f"chaos suite on {bootstrap}, seed {seed}: {', '.join(chosen)}")
    outcomes: list[scenarios.Outcome] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="rum-chaos-") as tmp,
        Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress,
    ):
        overall = progress.add_task("scenarios", total=len(chosen))
        for name in chosen:
            task = progress.add_task(f"[bold]{name}[/]: starting", total=None)

            def note(message: str, task: int = task, name: str = name) -> None:
                progress.update(task, description=f"[bold]{name}[/]: {message}")

            ctx = scenarios.Context(
                Path(tmp), bootstrap, random.Random(seed), note, args.check_timeout, args.keep_topics
            )
            outcome = run(name, ctx, args, broker, bootstrap)
            outcomes.append(outcome)
            verdict = "[green]pass[/]" if outcome.passed else "[red]FAIL[/]"
            progress.update(task, description=f"[bold]{name}[/]: {verdict} in {outcome.seconds:.0f} s")
            progress.stop_task(task)
            progress.advance(overall)
    total = time.monotonic() - started
    report(console, outcomes, total)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"seed": seed, "seconds": total, "scenarios": [scenarios.describe(o) for o in outcomes]},
                indent=2,
            )
        )
    return 0 if all(o.passed for o in outcomes) else 1


def run(
    name: str, ctx: scenarios.Context, args: argparse.Namespace, broker: LocalBroker, bootstrap: str
) -> scenarios.Outcome:
    """One scenario; an exception becomes a failed outcome, so the others still run."""
    try:
        if name == "kill":
            return scenarios.kill_workers(ctx, args.actions, args.kills, args.rate)
        if name == "broker":
            if bootstrap != broker.bootstrap or not broker.owned():
                return scenarios.Outcome(
                    "broker stop/start",
                    problems=[f"skipped: no broker started by scripts/broker.sh in {broker.state_dir}"],
                )
            return scenarios.broker_outage(ctx, broker, args.actions, args.outages, args.downtime, args.rate)
        if name == "rebalance":
            return scenarios.rebalance(ctx, args.actions, args.cycles, args.rate)
        return geoip_swap(ctx, args.actions // 2, args.swaps, workers_n=2, rate=args.rate)
    except Exception as exc:  # a scenario that cannot finish is a failure to report, not a crash
        return scenarios.Outcome(name, problems=[f"{type(exc).__name__}: {exc}"[:3000]])


def report(console: Console, outcomes: list[scenarios.Outcome], total: float) -> None:
    """A table of the outcomes and every problem found."""
    table = Table(title=f"chaos suite ({total / 60:.1f} min)")
    for column in ("scenario", "raw", "enriched", "bad", "duplicates", "disruptions", "time", "result"):
        table.add_column(
            column, justify="right" if column in ("raw", "enriched", "bad", "duplicates") else "left"
        )
    for o in outcomes:
        table.add_row(
            o.name,
            f"{o.raw:,}",
            f"{o.enriched:,}",
            f"{o.bad:,}",
            f"{o.duplicates:,}",
            str(len(o.disruptions)),
            f"{o.seconds:.0f} s",
            "[green]pass[/]" if o.passed else "[red]FAIL[/]",
        )
    console.print(table)
    for o in outcomes:
        if o.disruptions:
            console.print(f"{o.name}: {'; '.join(o.disruptions)}", markup=False, highlight=False)
    for o in outcomes:
        for problem in o.problems[:20]:
            console.print(f"{o.name}: {problem}", style="red", markup=False, highlight=False)


if __name__ == "__main__":
    sys.exit(main())
