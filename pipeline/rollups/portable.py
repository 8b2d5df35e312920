"""The published sketches as objects of the plain ``ddsketch`` and ``datasketches`` packages.

For consumers of ``rum.measures.rollup`` in Python: it imports nothing of Kafka
and nothing of the rest of the project, and needs no ``protobuf``. Each function
is a few lines that docs/sketches.md spells out, so a consumer may as well copy
them::

    from pipeline.rollups.portable import merged_quantiles, merged_unique_count

    records = [orjson.loads(value) for value in values_read_from_the_topic]
    p95, p99 = merged_quantiles([r["sketches"]["ddsketch"] for r in records], [0.95, 0.99])
    users = merged_unique_count([r["sketches"]["hll"]["usr.id"] for r in records])

The merged quantiles are exactly those of the pipeline's own merge.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from datasketches import hll_sketch, hll_union
from ddsketch import LogarithmicMapping, LogCollapsingLowestDenseDDSketch


def to_ddsketch(data: Mapping[str, Any]) -> LogCollapsingLowestDenseDDSketch:
    """The ``ddsketch`` package's sketch holding the bins of a published DDSketch.

    Each bin's count is added at the bin's representative value, which the
    package maps back to the same bin, so its quantiles are the published
    sketch's. Its ``sum`` is approximate: read the exact ``count``, ``sum``,
    ``min`` and ``max`` from the published dict (or the record's aggregations).
    """
    if data.get("type") != "ddsketch" or data.get("mapping", "logarithmic") != "logarithmic":
        raise ValueError("not a logarithmic-mapping ddsketch")
    mapping = LogarithmicMapping(data["relative_accuracy"])
    if mapping.gamma != data["gamma"] or data.get("index_offset", 0.0) != 0.0:
        raise ValueError(f"unexpected gamma/index_offset {data['gamma']}/{data.get('index_offset')}")
    sketch = LogCollapsingLowestDenseDDSketch(data["relative_accuracy"], data["bin_limit"])
    for sign, store in ((1.0, data["positive"]), (-1.0, data["negative"])):
        for index, count in enumerate(store["counts"]):
            if count > 0:
                sketch.add(sign * mapping.value(store["offset"] + index), count)
    if data["zero_count"] > 0:
        sketch.add(0.0, data["zero_count"])
    return sketch


def merged_quantiles(sketches: Iterable[Mapping[str, Any]], qs: Sequence[float]) -> list[float | None]:
    """The quantiles ``qs`` of the merge of published DDSketches (None: no values).

    Estimates are clamped to the exact min and max of the merged values, as the
    pipeline's own quantiles are (the true quantile lies between them).
    """
    merged: LogCollapsingLowestDenseDDSketch | None = None
    low, high = float("inf"), float("-inf")
    for data in sketches:
        if not data["count"]:
            continue
        sketch = to_ddsketch(data)
        if merged is None:
            merged = sketch
        else:
            merged.merge(sketch)
        low, high = min(low, data["min"]), max(high, data["max"])
    out: list[float | None] = []
    for q in qs:
        value = None if merged is None else merged.get_quantile_value(q)
        out.append(None if value is None else float(min(max(value, low), high)))
    return out


def to_hll(text: str) -> hll_sketch:
    """The DataSketches HLL sketch of a published base64 image."""
    return hll_sketch.deserialize(base64.b64decode(text))


def merged_unique_count(texts: Iterable[str]) -> float:
    """The estimated number of distinct values over published HLL images (their union)."""
    union: hll_union | None = None
    for text in texts:
        sketch = to_hll(text)
        if union is None:
            union = hll_union(sketch.lg_config_k)
        union.update(sketch)
    return 0.0 if union is None else float(union.get_estimate())
