"""Published sketches merged by the plain ddsketch and datasketches packages, as docs/sketches.md shows."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.partials import MergedRollup, Partial, RollupKey
from pipeline.rollups.portable import merged_quantiles, merged_unique_count, to_ddsketch, to_hll
from pipeline.rollups.sketches import CardinalitySketch, QuantileSketch
from pipeline.schemas import MEASURE_ROLLUP, validate_record

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sketches.md"
AGGS = AggregationSet.of(("count", "sum", "avg", "min", "max", "p50", "p95", "p99", "cardinality(usr.id)"))
QS = [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]


def published(country: str, window_start: int, actions: list[tuple[Any, str]], partitions: int = 3) -> bytes:
    """A measure-rollup record as the merge stage writes it: partials of several partitions, merged."""
    key = RollupKey("cart_value_by_country", "1h", window_start, (("geo.country", country),))
    partials = [Partial(key, p, AGGS) for p in range(partitions)]
    for offset, (value, user) in enumerate(actions):
        event = {"usr": {"id": user}, "context": {"value": value}, "geo": {"country": country}}
        partials[offset % partitions].apply(offset, value, event)
    merged = MergedRollup(key, AGGS)
    for partial in partials:
        merged.offer(Partial.from_bytes(partial.to_bytes()))  # as read back from the partials topic
    record = merged.record(updated_at_ms=window_start + 3_600_000, final=True)
    assert validate_record(MEASURE_ROLLUP, record) == []
    return orjson.dumps(record)


def shop_actions(rng: random.Random, n: int, users: int) -> list[tuple[Any, str]]:
    actions: list[tuple[Any, str]] = []
    for _ in range(n):
        value: Any = round(rng.lognormvariate(3.5, 0.9), 2)
        if rng.random() < 0.05:
            value = rng.choice([None, "n/a", 0, -12.5])  # no measure, a string, a zero, a refund
        actions.append((value, f"u-{rng.randrange(users)}"))
    return actions


@pytest.fixture(scope="module")
def records() -> list[bytes]:
    rng = random.Random(19)
    hour = 1_764_338_400_000
    return [
        published("France", hour, shop_actions(rng, 900, 400)),
        published("Spain", hour, shop_actions(rng, 300, 250)),
        published("France", hour + 3_600_000, shop_actions(rng, 500, 400)),
        published("Peru", hour, [(None, "u-1")]),  # actions without a measure: an empty DDSketch
    ]


def project_merge(records: list[bytes]) -> tuple[list[float | None], float]:
    """Quantiles and unique count from the pipeline's own sketches, merged."""
    decoded = [orjson.loads(raw) for raw in records]
    merged = QuantileSketch()
    for record in decoded:
        merged.merge(QuantileSketch.from_dict(record["sketches"]["ddsketch"]))
    users = CardinalitySketch.union_of(
        CardinalitySketch.from_base64(record["sketches"]["hll"]["usr.id"]) for record in decoded
    )
    return merged.quantiles(QS), users.estimate()


def docs_recipe() -> str:
    """The Python block that follows the ``<!-- recipe: merge -->`` marker in docs/sketches.md."""
    found = re.search(r"<!-- recipe: merge -->\n```python\n(.*?)```", DOCS.read_text(), re.S)
    assert found, "docs/sketches.md lost its merge recipe"
    return found.group(1)


_DRIVER = """
import json, sys
import orjson
records = [orjson.loads(line) for line in sys.stdin.buffer.read().splitlines()]
qs = json.loads(sys.argv[1])
print(json.dumps({
    "quantiles": percentiles(records, qs),
    "users": unique_count(records, "usr.id"),
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("pipeline", "google")),
}))
"""


def run_recipe(records: list[bytes], qs: list[float]) -> tuple[list[float | None], float]:
    """The docs' recipe run on ``records`` by an interpreter that can import nothing of this project."""
    # -I: isolated, so neither the working directory nor PYTHONPATH is on its path.
    done = subprocess.run(
        [sys.executable, "-I", "-c", docs_recipe() + _DRIVER, json.dumps(qs)],
        input=b"\n".join(records),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"leaked" not in done.stderr
    answer = json.loads(done.stdout)
    assert answer["modules"] == []  # neither the project nor protobuf was needed
    return answer["quantiles"], answer["users"]


@pytest.mark.parametrize("pick", [[0, 1], [0, 2], [0, 1, 2, 3], [3]])
def test_the_documented_recipe_merges_published_sketches_like_the_pipeline(
    records: list[bytes], pick: list[int]
) -> None:
    chosen = [records[i] for i in pick]
    assert run_recipe(chosen, QS) == project_merge(chosen)


def test_the_helper_merges_like_the_pipeline(records: list[bytes]) -> None:
    decoded = [orjson.loads(raw) for raw in records]
    quantiles, users = project_merge(records)
    assert merged_quantiles([r["sketches"]["ddsketch"] for r in decoded], QS) == quantiles
    assert merged_unique_count([r["sketches"]["hll"]["usr.id"] for r in decoded]) == users
    assert merged_quantiles([decoded[3]["sketches"]["ddsketch"]], QS) == [None] * len(QS)
    assert merged_unique_count([]) == 0.0


def test_a_rebuilt_sketch_counts_the_numeric_values_and_the_users() -> None:
    actions = shop_actions(random.Random(3), 400, 150)
    record = orjson.loads(published("Japan", 1_764_338_400_000, actions))
    numeric = [v for v, _ in actions if isinstance(v, int | float) and not isinstance(v, bool)]
    rebuilt = to_ddsketch(record["sketches"]["ddsketch"])
    assert rebuilt.count == len(numeric) < record["aggregations"]["count"] == len(actions)
    estimate = to_hll(record["sketches"]["hll"]["usr.id"]).get_estimate()
    users = len({user for _, user in actions})
    assert abs(estimate - users) <= 3 * 0.016 * users
    assert round(estimate) == record["aggregations"]["cardinality(usr.id)"]


def test_the_helper_refuses_sketches_of_another_kind() -> None:
    data = QuantileSketch().to_dict()
    with pytest.raises(ValueError):
        to_ddsketch({**data, "type": "tdigest"})
    with pytest.raises(ValueError):
        to_ddsketch({**data, "gamma": 1.05})
