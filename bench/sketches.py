"""Quantile sketch benchmark: the rollups' sketch operations, this code beside an earlier one.

Times ``QuantileSketch`` on what the rollup path does with it, in one process,
offline (no broker):

- ``add_many``: batches of 8 cart values (log-normal, ~0.5 to ~500) into 1,000
  sketches, 10 batches each (a flush interval's actions, per window and group);
- ``merge``: 1,000 sketches of ~80 values into one sketch each (the merge stage);
- ``to_bytes`` / ``from_bytes``: 1,000 sketches of ~80 values (partials and upserts);
- ``quantiles``: p50, p75, p90, p95 and p99 of 1,000 such sketches (every upsert).

A third column times the same through the ``ddsketch`` package's public API
alone (``PublicApiSketch``: one add per value, a rebuild by one weighted add per
bin; it cannot write the published form at all), against the same baseline.

The earlier code is ``pipeline/rollups/sketches.py`` at the git revision
``--baseline`` (default: the last commit before the sketch became the project's
own), loaded beside the working tree's. Both run interleaved, ``--runs`` times;
each figure is the fastest run in µs per operation, and the ratio is this code's
time over the baseline's (below 1: faster). The machine is shared: compare ratios.

With ``--stages``, it also times both rollup stages offline, as a worker runs
them but without Kafka: generated shop actions (default config/rollups.yaml,
dated over 30 s, 4 partitions) applied to a ``RollupEngine`` and flushed every
500 actions per partition, every partial encoded and offered to a ``Merger``,
whose upserts are encoded. It runs in child processes on the working tree and
on an export of the whole baseline revision (``git archive``), in CPU µs per action.

    python bench/sketches.py [--baseline REV] [--runs 7] [--stages]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
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
DEFAULT_BASELINE = "bfda607"
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


class PublicApiSketch:
    """The sketch through the ``ddsketch`` package's public API alone: what that choice would cost.

    Values are added one by one (the API has no batch add), and a published
    sketch is rebuilt by one weighted add per bin (``pipeline.rollups.portable``).
    It cannot be written: the package's sketch has no public way to read its bins.
    """

    __slots__ = ("_max", "_min", "_sketch")

    def __init__(self) -> None:
        from ddsketch import LogCollapsingLowestDenseDDSketch

        self._sketch = LogCollapsingLowestDenseDDSketch(0.01, 2048)
        self._min, self._max = float("inf"), float("-inf")  # the sketch has no public min and max

    def add_many(self, values: list[float]) -> None:
        add = self._sketch.add
        for value in values:
            add(value)
        self._min, self._max = min(self._min, *values), max(self._max, *values)

    def merge(self, other: PublicApiSketch) -> None:
        self._sketch.merge(other._sketch)
        self._min, self._max = min(self._min, other._min), max(self._max, other._max)

    def quantiles(self, qs: list[float]) -> list[float]:
        get = self._sketch.get_quantile_value
        return [min(max(get(q), self._min), self._max) for q in qs]

    to_bytes = None  # not possible through the public API

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicApiSketch:
        import orjson

        from pipeline.rollups.portable import to_ddsketch

        data = orjson.loads(raw)
        out = cls()
        out._sketch = to_ddsketch(data)
        out._min, out._max = data["min"], data["max"]
        return out


def workloads(cls: Any, rng: random.Random, writer: Any) -> dict[str, Callable[[], int]]:
    """Each operation as a function doing it many times and returning how many.

    ``writer`` encodes the sketches ``from_bytes`` reads (``cls`` itself, when it can write).
    """
    batches = [[round(rng.lognormvariate(3.5, 0.9), 2) for _ in range(8)] for _ in range(10 * SKETCHES)]
    contents = [[round(rng.lognormvariate(3.5, 0.9), 2) for _ in range(80)] for _ in range(SKETCHES)]
    filled = []
    for values in contents:
        sketch = cls()
        sketch.add_many(values)
        filled.append(sketch)
    encoded = []
    for values in contents:
        sketch = (cls if cls.to_bytes else writer)()
        sketch.add_many(values)
        encoded.append(sketch.to_bytes())

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

    works = {
        "add_many (8 values)": add_many,
        "merge": merge,
        "to_bytes": to_bytes,
        "from_bytes": from_bytes,
        "quantiles (5)": quantiles,
    }
    if not cls.to_bytes:
        del works["to_bytes"]
    return works


def stages(actions: int) -> tuple[float, str]:
    """µs per action of both rollup stages over ``actions`` generated actions, and a digest of the upserts."""
    import hashlib

    import orjson

    from pipeline.generate import TrafficGenerator
    from pipeline.rollups.config import default_config_path, load_rollup_config
    from pipeline.rollups.engine import RollupEngine
    from pipeline.rollups.merge import Merger

    start_ms = 1_764_338_400_000
    events = [
        orjson.loads(m.value)
        for m in TrafficGenerator(seed=3, start_ms=start_ms, span_ms=30_000).messages(actions)
        if m.malformed is None
    ]
    geo = [{"country": c, "country_iso_code": c[:2].upper()} for c in ("France", "Spain", "Peru", "Japan")]
    for i, event in enumerate(events):
        event["geo"] = geo[i % len(geo)]
        event["browser"] = {"name": ("Chrome", "Firefox", "Safari")[i % 3]}
    config = load_rollup_config(default_config_path())
    digest = hashlib.sha256()
    began = time.process_time()  # this process's CPU time: less disturbed by what else runs
    engine = RollupEngine(config)
    merger = Merger(config.grace_seconds, config.retention_seconds)
    partitions = 4
    for partition in range(partitions):
        engine.restoring(partition).finish()
    for offset in range(0, len(events), 500 * partitions):
        for partition in range(partitions):
            batch = events[offset + partition * 500 : offset + (partition + 1) * 500]
            for i, event in enumerate(batch):
                engine.apply(partition, offset + i, event, receive_ms=event["date"] + 1000)
            changes, _ = engine.flush(partition)
            watermark = engine.partitions[partition].watermark
            for partial, evicted in changes:
                if not evicted:
                    value = (
                        b'{"partial":'
                        + partial.to_bytes()
                        + b',"watermark":'
                        + str(watermark).encode()
                        + b"}"
                    )
                    merger.offer(value, 0)
        for upsert in merger.flush(now_ms=start_ms + 60_000):
            digest.update(orjson.dumps(upsert.value))
    return (time.process_time() - began) / len(events) * 1e6, digest.hexdigest()


def stages_side_by_side(baseline: str, runs: int, folder: Path) -> None:
    """``stages`` in child processes on the working tree and on the baseline revision's export."""
    export = folder / "baseline-tree"
    export.mkdir()
    archive = subprocess.run(["git", "archive", baseline], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(export)], input=archive, check=True)
    best: dict[str, float] = {}
    digests: set[str] = set()
    for _ in range(runs):
        for side, tree in (("baseline", export), ("this code", ROOT)):
            done = subprocess.run(
                [sys.executable, __file__, "--stages-child"],
                env={**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"},  # same set orders
                check=True,
                capture_output=True,
                text=True,
            )
            took, digest = done.stdout.split()
            best[side] = min(best.get(side, float(took)), float(took))
            digests.add(digest)
    old, new = best["baseline"], best["this code"]
    assert len(digests) == 1, "the two sides wrote different upserts"
    print(f"{'both rollup stages':22} {old:10.2f} {new:10.2f} {new / old:7.2f}   (µs per action, offline)")
    print("the upserts of both sides are byte for byte the same")


def timed(work: Callable[[], int]) -> float:
    """µs per operation of one call of ``work``."""
    start = time.process_time()
    count = work()
    return (time.process_time() - start) / count * 1e6


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--stages", action="store_true", help="time both rollup stages offline too")
    parser.add_argument("--stages-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages_child:  # pipeline is imported from PYTHONPATH: this tree or the baseline's
        print(*stages(40_000))
        return
    sys.path.insert(0, str(ROOT))
    from pipeline.rollups.sketches import QuantileSketch

    with tempfile.TemporaryDirectory() as folder:
        baseline = load_revision(args.baseline, Path(folder))
        sides = {
            "baseline": workloads(baseline.QuantileSketch, random.Random(5), None),
            "this code": workloads(QuantileSketch, random.Random(5), None),
            "public API": workloads(PublicApiSketch, random.Random(5), QuantileSketch),
        }
        best: dict[tuple[str, str], float] = {}
        for _ in range(args.runs):
            for side, works in sides.items():
                for name, work in works.items():
                    took = timed(work)
                    best[side, name] = min(best.get((side, name), took), took)
    print(f"QuantileSketch, µs per operation (fastest of {args.runs}), baseline {args.baseline}")
    print(f"{'operation':22} {'baseline':>10} {'this code':>10} {'ratio':>7} {'public API':>11} {'ratio':>7}")
    for name in sides["baseline"]:
        old, new = best["baseline", name], best["this code", name]
        public = best.get(("public API", name))
        through = "        n/a     n/a" if public is None else f"{public:11.2f} {public / old:7.2f}"
        print(f"{name:22} {old:10.2f} {new:10.2f} {new / old:7.2f} {through}")
    if args.stages:
        with tempfile.TemporaryDirectory() as folder:
            stages_side_by_side(args.baseline, max(3, args.runs // 2), Path(folder))


if __name__ == "__main__":
    main()
