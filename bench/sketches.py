"""Quantile sketch benchmark: the rollups' sketch operations, this code beside an earlier one.

Times ``QuantileSketch`` on what the rollup path does with it, in one process,
offline (no broker):

- ``add_many``: batches of 8 cart values (log-normal, ~0.5 to ~500) into 1,000
  sketches, 10 batches each (a flush interval's actions, per window and group);
- ``merge``: 1,000 sketches of ~80 values into one sketch each (the merge stage);
- ``to_bytes`` / ``from_bytes``: 1,000 sketches of ~80 values (partials and upserts);
- ``quantiles``: p50, p75, p90, p95 and p99 of 1,000 such sketches (every upsert).

The earlier code is ``pipeline/rollups/sketches.py`` at the git revision
``--baseline`` (default: the last commit before the sketch became the project's
own), loaded beside the working tree's. Both run interleaved, ``--runs`` times;
each figure is the fastest run in µs per operation, and the ratio is this code's
time over the baseline's (below 1: faster). The machine is shared: compare ratios.

    python bench/sketches.py [--baseline REV] [--runs 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "0afb2de"
SKETCHES = 1_000
QS = [0.5, 0.75, 0.9, 0.95, 0.99]


def load_revision(revision: str, folder: Path) -> ModuleType:
    """``pipeline/rollups/sketches.py`` as it was at ``revision``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:pipeline/rollups/sketches.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = folder / "baseline_sketches.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_sketches", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workloads(cls: Any, rng: random.Random) -> dict[str, Callable[[], int]]:
    """Each operation as a function doing it many times and returning how many."""
    batches = [[round(rng.lognormvariate(3.5, 0.9), 2) for _ in range(8)] for _ in range(10 * SKETCHES)]
    filled = []
    for _ in range(SKETCHES):
        sketch = cls()
        sketch.add_many([round(rng.lognormvariate(3.5, 0.9), 2) for _ in range(80)])
        filled.append(sketch)
    encoded = [sketch.to_bytes() for sketch in filled]

    def add_many() -> int:
        sketches = [cls() for _ in range(SKETCHES)]
        for i, batch in enumerate(batches):
            sketches[i % SKETCHES].add_many(batch)
        return len(batches)

    def merge() -> int:
        for sketch in filled:
            target = cls()
            target.add_many([12.5, 40.0])
            target.merge(sketch)
        return len(filled)

    def to_bytes() -> int:
        for sketch in filled:
            sketch.to_bytes()
        return len(filled)

    def from_bytes() -> int:
        for raw in encoded:
            cls.from_bytes(raw)
        return len(encoded)

    def quantiles() -> int:
        for sketch in filled:
            sketch.quantiles(QS)
        return len(filled)

    return {
        "add_many (8 values)": add_many,
        "merge": merge,
        "to_bytes": to_bytes,
        "from_bytes": from_bytes,
        "quantiles (5)": quantiles,
    }


def timed(work: Callable[[], int]) -> float:
    """µs per operation of one call of ``work``."""
    start = time.perf_counter()
    count = work()
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipeline.rollups.sketches import QuantileSketch

    with tempfile.TemporaryDirectory() as folder:
        baseline = load_revision(args.baseline, Path(folder))
        sides = {
            "baseline": workloads(baseline.QuantileSketch, random.Random(5)),
            "this code": workloads(QuantileSketch, random.Random(5)),
        }
        best: dict[tuple[str, str], float] = {}
        for _ in range(args.runs):
            for side, works in sides.items():
                for name, work in works.items():
                    took = timed(work)
                    best[side, name] = min(best.get((side, name), took), took)
    print(f"QuantileSketch, µs per operation (fastest of {args.runs}), baseline {args.baseline}")
    print(f"{'operation':22} {'baseline':>10} {'this code':>10} {'ratio':>7}")
    for name in sides["baseline"]:
        old, new = best["baseline", name], best["this code", name]
        print(f"{name:22} {old:10.2f} {new:10.2f} {new / old:7.2f}")


if __name__ == "__main__":
    main()
