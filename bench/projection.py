"""Projection benchmark: the copy the rollups keep of each queued action, generated code or closures.

``compile_projection`` (pipeline/query/paths.py) writes each projection out as
straight-line Python source and compiles it once. This times it beside the same
copy made by closures (one per object level, looping over that level's keys),
on generated shop actions with the enriched attributes the default rollup
config reads, in one process, offline. Each figure is the fastest of --runs, in
µs per action; the machine is shared, so compare the ratio.

    python bench/projection.py [--actions 50000] [--runs 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]

# What the engine projects with the default config/rollups.yaml: the date, and every path a
# rollup, a facet or a filter reads.
PATHS = [
    "date",
    "action.target.name",
    "context.value",
    "geo.country",
    "usr.id",
    "browser.name",
    "device.type",
    "os.name",
    "context.items",
    "view.url_path_group",
]


def enriched_actions(n: int) -> list[dict[str, Any]]:
    """Generated raw actions with enrichment-shaped attributes added (no lookups needed)."""
    from pipeline.generate import TrafficGenerator

    actions = []
    for message in TrafficGenerator(seed=3, start_ms=1_764_338_400_000).messages(n):
        action = orjson.loads(message.value)
        action["geo"] = {
            "country": "France",
            "country_iso_code": "FR",
            "country_subdivision": "Île-de-France",
            "city": "Paris",
            "continent": "Europe",
            "continent_code": "EU",
        }
        action["browser"] = {"name": "Chrome", "version": "120.0.0", "version_major": "120"}
        action["os"] = {"name": "Windows", "version": "10", "version_major": "10"}
        action["device"] = {"type": "desktop", "brand": None, "model": None, "name": "Other"}
        action["view"].update(url_scheme="https", url_host="shop.example", url_path_group="/product/?")
        actions.append(action)
    return actions


def closure_projection(paths: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The same copy as ``compile_projection``, made by one closure per object level."""
    from pipeline.query.paths import MISSING

    tree: dict[str, Any] = {}
    for path in paths:
        *steps, last = path.split(".")
        node = tree
        for step in steps:
            child = node.setdefault(step, {})
            if child is None:
                break
            node = child
        else:
            node[last] = None

    def copier(level: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        items = [(key, None if sub is None else copier(sub)) for key, sub in level.items()]

        def project(obj: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for key, sub in items:
                value = obj.get(key, MISSING)
                if value is not MISSING:
                    if sub is not None and isinstance(value, dict):
                        value = sub(value)
                    out[key] = value
            return out

        return project

    return copier(tree)


def timed(project: Callable[[dict[str, Any]], dict[str, Any]], actions: list[dict[str, Any]]) -> float:
    """µs per action of projecting every action once."""
    start = time.perf_counter()
    for action in actions:
        project(action)
    return (time.perf_counter() - start) / len(actions) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--actions", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipeline.query.paths import compile_projection

    actions = enriched_actions(args.actions)
    sides = {"generated code": compile_projection(PATHS), "closures": closure_projection(PATHS)}
    for action in actions[:1000]:  # both make the same copy
        assert sides["generated code"](action) == sides["closures"](action)
    best: dict[str, float] = {}
    for _ in range(args.runs):
        for name, project in sides.items():
            took = timed(project, actions)
            best[name] = min(best.get(name, took), took)
    generated, closures = best["generated code"], best["closures"]
    print(f"projection of {len(PATHS)} paths, µs per action (fastest of {args.runs}, {len(actions)} actions)")
    print(f"generated code {generated:6.3f}")
    print(f"closures       {closures:6.3f}")
    ratio, saved = closures / generated, closures - generated
    print(f"closures / generated code: {ratio:.2f}; the generated code saves {saved:.3f} µs per action")


if __name__ == "__main__":
    main()
