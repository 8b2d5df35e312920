"""The enrichment hot path of this tree against another one, measured side by side.

bench/enrich.py's hot path runs one tree; on a shared machine two of its runs
a minute apart differ by more than a change to an enrichment does. Here one
process per tree holds a warm ``Processor`` (caches filled by a first pass)
and the two take turns, pass after pass, each timing its own CPU time per
action over the same generated traffic: whatever else the machine does meets
both. The ratio of each pair of passes (this tree / the other) is reported,
with its median; give the other tree as a checkout of the commit to compare
with (``git worktree add /tmp/base HEAD~3``).

    python bench/enrich_compare.py /tmp/base [--events 5000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: One tree's side: a warm processor that times one pass per line read from stdin.
_WORKER = """
import sys, time
from pipeline.generate import TrafficGenerator
from pipeline.process import Processor
from pipeline.settings import load_settings

messages = [m.value for m in TrafficGenerator(seed=3, malformed_share=0.01).messages(int(sys.argv[1]))]
processor = Processor(load_settings({}))
for i, payload in enumerate(messages):
    processor.process(payload, topic="raw", partition=0, offset=i)
print("ready", flush=True)
for _ in sys.stdin:
    started = time.process_time()
    for i, payload in enumerate(messages):
        processor.process(payload, topic="raw", partition=0, offset=i)
    print((time.process_time() - started) / len(messages) * 1e6, flush=True)
"""


def _start(tree: Path, events: int) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(events)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},  # no RUM_* from the caller
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None and worker.stdout.readline().strip() == "ready", f"{tree} did not start"
    return worker


def _pass(worker: subprocess.Popen[str]) -> float:
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write("go\n")
    worker.stdin.flush()
    return float(worker.stdout.readline())


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("other", type=Path, help="the other tree (a checkout holding pipeline/ and schemas/)")
    parser.add_argument("--events", type=int, default=5000, help="generated actions per pass")
    parser.add_argument("--rounds", type=int, default=30, help="passes of each tree")
    args = parser.parse_args()
    trees = {"this": ROOT, "other": args.other.resolve()}
    workers = {name: _start(tree, args.events) for name, tree in trees.items()}
    samples: dict[str, list[float]] = {name: [] for name in trees}
    try:
        for round_ in range(args.rounds):
            order = ["this", "other"] if round_ % 2 == 0 else ["other", "this"]  # neither always first
            for name in order:
                samples[name].append(_pass(workers[name]))
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait()
    ratios = [a / b for a, b in zip(samples["this"], samples["other"], strict=True)]
    for name, tree in trees.items():
        values = samples[name]
        median, best = statistics.median(values), min(values)
        print(f"{name:5} {tree}: CPU µs/action median {median:.1f}, best {best:.1f}")
    print(
        f"this / other: median of paired ratios {statistics.median(ratios):.3f} "
        f"(quartiles {statistics.quantiles(ratios, n=4)[0]:.3f}-{statistics.quantiles(ratios, n=4)[2]:.3f}), "
        f"best / best {min(samples['this']) / min(samples['other']):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
