"""A view whose sketches go to RocksDB past a bound answers exactly as one held in memory."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from pipeline.view.query import run_query
from pipeline.view.request import Limits, RollupInfo, parse_query
from pipeline.view.spill import SketchSpill
from pipeline.view.store import ViewStore
from tests.view.records import CART, rollup_record

M = 60_000
DAY0 = 1_764_288_000_000
INFO = {"cart": RollupInfo("cart", (60, 3600, 86400), ("geo.country",), CART)}


def records(seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for minute in range(120):
        for country in ("France", "Spain", "Italy"):
            rows = [
                (round(rng.uniform(1, 200), 2), f"u{rng.randrange(50)}") for _ in range(rng.randint(1, 6))
            ]
            out.append(rollup_record("cart", 60, DAY0 + minute * M, {"geo.country": country}, rows))
    return out


def test_spilled_sketches_give_the_same_answers(tmp_path: Path) -> None:
    first, second = records(1), records(2)  # the second pass replaces every key
    memory = ViewStore()
    spill = SketchSpill(tmp_path, capacity=50)
    bounded = ViewStore(spill=spill)
    for record in first + second:
        memory.apply_rollup_record(record)
        bounded.apply_rollup_record(record)
    assert bounded.keys == memory.keys == 360
    assert bounded.sketches_in_memory == 50 and spill.held == 310  # replaced keys reused their place
    limits = Limits()
    query = parse_query(
        {"rollup": "cart", "from": str(DAY0 + 7 * M), "to": str(DAY0 + 97 * M)},
        [],
        INFO,
        DAY0 + 2 * 86_400_000,
        limits,
    )
    assert run_query(bounded, query, limits)["groups"] == run_query(memory, query, limits)["groups"]
    # Tombstones free the spilled sketches too.
    for record in second:
        key = {k: record[k] for k in ("rollup", "interval", "window_start", "group")}
        bounded.apply_rollup(orjson.dumps(key), None)
    assert bounded.keys == 0 and spill.held == 0 and bounded.sketches_in_memory == 0
    spill.close()
    assert not spill.folder.exists()
