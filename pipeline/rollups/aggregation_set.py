"""The aggregations of one rollup, parsed from their config names and sharing one state per group."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import orjson

from pipeline.rollups.aggregations import (
    Aggregation,
    Avg,
    Count,
    Max,
    Min,
    Percentile,
    State,
    Sum,
    as_measure,
)
from pipeline.rollups.attribute_aggregations import AttributeAggregation, Cardinality, ValueCounts

_PERCENTILE = re.compile(r"p(\d{1,3}(?:\.\d+)?)")
_VALUES = re.compile(r"values\((.+)\)")
_CARDINALITY = re.compile(r"cardinality\(@?([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\)")
_SIMPLE: dict[str, type[Aggregation]] = {"count": Count, "sum": Sum, "avg": Avg, "min": Min, "max": Max}


def parse_aggregation(name: str) -> Aggregation:
    """Build the aggregation for a config name: count, sum, avg, min, max, pNN, cardinality(attr)."""
    if name in _SIMPLE:
        return _SIMPLE[name](name)
    if match := _PERCENTILE.fullmatch(name):
        q = float(match.group(1))
        if 0 <= q <= 100:
            return Percentile(name, q / 100)
    elif match := _CARDINALITY.fullmatch(name):
        return Cardinality(name, match.group(1))
    elif match := _VALUES.fullmatch(name):
        return ValueCounts(name, match.group(1))
    raise ValueError(
        f"unknown aggregation {name!r}; expected count, sum, avg, min, max, "
        "pNN (0 <= NN <= 100, e.g. p50, p99, p99.9) or cardinality(attribute.path)"
    )


class AggregationSet:
    """The aggregations of one rollup, sharing one combined state per group.

    The state is a dict keyed by slot (``count``, ``sum``, ``min``, ``max``,
    ``ddsketch``, ``hll:<attr>``); ``count`` is always kept. ``add`` and ``merge``
    update the given state in place and return it.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate aggregations in {list(self.names)}")
        self.aggregations = [parse_aggregation(name) for name in self.names]
        owners: dict[str, Aggregation] = {"count": Count("count")}
        for agg in self.aggregations:
            owners.setdefault(agg.slot, agg)
        self._owners = owners
        self._measure = [(slot, agg) for slot, agg in owners.items() if agg.uses_measure]
        self._cardinality = [(slot, agg) for slot, agg in owners.items() if isinstance(agg, Cardinality)]
        self._value_counts = [(slot, agg) for slot, agg in owners.items() if isinstance(agg, ValueCounts)]
        #: The value counter of a facet window's set (count and values alone), else None.
        self.value_counter = self._value_counts[0][1] if list(owners) == ["count", "values"] else None
        self._percentiles = [agg for agg in self.aggregations if isinstance(agg, Percentile)]
        self._percentile_names = [agg.name for agg in self._percentiles]
        self._percentile_qs = [agg.q for agg in self._percentiles]
        #: ``names`` as a JSON list, for encoders that assemble records around it.
        self.encoded_names = orjson.dumps(list(self.names))
        #: True when the state is the count alone (facets, late counts).
        self.counts_only = list(owners) == ["count"]
        #: The attribute paths the aggregations read (besides the rollup's measure).
        self.paths = tuple(agg.attr for agg in owners.values() if isinstance(agg, AttributeAggregation))

    @staticmethod
    @lru_cache(maxsize=256)
    def of(names: tuple[str, ...]) -> AggregationSet:
        """A shared instance per aggregation list (the set itself holds no state)."""
        return AggregationSet(names)

    def initialize(self) -> State:
        """A fresh empty state."""
        return {slot: agg.initialize() for slot, agg in self._owners.items()}

    def add(self, state: State, measure_value: Any, event: dict[str, Any]) -> State:
        """Add one event that matched the rollup filter; see the module docstring for what counts."""
        state["count"] += 1
        value = as_measure(measure_value)
        if value is not None:
            for slot, agg in self._measure:
                state[slot] = agg.add(state[slot], value)
        for slot, card in self._cardinality:
            sketch = state[slot]
            for item in card.values(event):
                sketch.add(item)
        for slot, counter in self._value_counts:
            counter.count_event(state[slot], event)
        return state

    def add_many(
        self,
        state: State,
        measures: Sequence[Any] | None,
        events: Sequence[dict[str, Any]],
        canonical: dict[str, str] | None = None,
        derived: dict[str, Any] | None = None,
    ) -> State:
        """Add several events at once (``measures[i]`` belongs to ``events[i]``); equal to ``add`` each.

        ``canonical`` caches the cardinality item texts of strings (see
        ``Cardinality.items``) for the duration of one aggregation pass, so that
        a value seen in several windows is converted once. ``derived`` keeps
        what depends on ``measures`` and ``events`` alone (the measure values,
        each cardinality's items) for the next state given the same ones: the
        windows of a rollup's intervals (1m, 1h, 1d) mostly get the same actions.
        """
        if derived is None:
            derived = {}
        state["count"] += len(events)
        if measures is not None and self._measure:
            values = derived.get("measures")
            if values is None:
                values = derived["measures"] = [v for v in map(as_measure, measures) if v is not None]
            if values:
                for slot, agg in self._measure:
                    state[slot] = agg.add_many(state[slot], values)
        for slot, card in self._cardinality:
            items = derived.get(slot)
            if items is None:
                items = derived[slot] = card.items(events, canonical if canonical is not None else {})
            state[slot].add_items(items)
        for slot, counter in self._value_counts:
            counter.count_events(state[slot], events)
        return state

    def add_counted(self, state: State, events: int, counts: Iterable[dict[Any, int]]) -> State:
        """``add_many`` for a ``value_counter`` set, from value counts made beforehand.

        ``events`` is the number of events behind ``counts`` (made by
        ``value_counter.count_event``), so that one count serves several windows.
        """
        state["count"] += events
        values = state["values"]
        for found in counts:
            for value, count in found.items():
                values[value] = values.get(value, 0) + count
        return state

    def merge_all(self, states: Sequence[State]) -> State:
        """A new state merging every one of ``states`` (none is changed); equal to merging them in turn."""
        return {slot: agg.merge_all([s[slot] for s in states]) for slot, agg in self._owners.items()}

    def merge(self, a: State, b: State) -> State:
        """Merge ``b`` into ``a`` and return ``a``; ``b`` is not changed."""
        for slot, agg in self._owners.items():
            a[slot] = agg.merge(a[slot], b[slot])
        return a

    def result(self, state: State) -> dict[str, Any]:
        """Every aggregation's value, keyed by its name as configured."""
        found: dict[str, Any] = {}
        if self._percentiles:  # every percentile from one pass over the shared sketch
            sketch = state[self._percentiles[0].slot]
            found = dict(zip(self._percentile_names, sketch.quantiles(self._percentile_qs), strict=True))
        return {
            agg.name: found[agg.name] if agg.name in found else agg.result(state[agg.slot])
            for agg in self.aggregations
        }

    def sketches(self, state: State) -> dict[str, Any]:
        """The serialized sketches consumers can merge: ``ddsketch`` dict and ``hll`` {attr: base64}."""
        out: dict[str, Any] = {}
        for slot, agg in self._owners.items():
            if isinstance(agg, Percentile):
                out["ddsketch"] = agg.dump(state[slot])
            elif isinstance(agg, Cardinality):
                out.setdefault("hll", {})[agg.attr] = agg.dump(state[slot])
        return out

    def dump(self, state: State) -> dict[str, Any]:
        """The state as JSON-friendly data.

        ``{count, sum: {n, sum, comp}, min, max, ddsketch, hll: {attr: base64}}``
        (only the slots the set uses).
        """
        out: dict[str, Any] = {}
        for slot, agg in self._owners.items():
            if isinstance(agg, Cardinality):
                out.setdefault("hll", {})[agg.attr] = agg.dump(state[slot])
            else:
                out[slot] = agg.dump(state[slot])
        return out

    def load(self, data: dict[str, Any]) -> State:
        """Inverse of ``dump``; raises KeyError/ValueError when a slot is missing or malformed."""
        state: State = {}
        for slot, agg in self._owners.items():
            raw = data["hll"][agg.attr] if isinstance(agg, Cardinality) else data[slot]
            state[slot] = agg.load(raw)
        return state
