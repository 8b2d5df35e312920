"""Rollup aggregations: one small class each, combined into one state per group.

Every aggregation has ``initialize() -> state``, ``add(state, value) -> state``,
``merge(a, b) -> state``, ``result(state)`` and ``dump``/``load`` to JSON-friendly
data. ``merge`` is what lets partial states from several source partitions (or
several windows) be combined, which the exactly-once-in-effect design relies on.

Aggregations that can share state read the same *slot*: ``avg`` reads the ``sum``
slot (count of values, compensated sum), and every percentile reads the one
``ddsketch`` slot, so ``[p50, p75, p90, p95, p99]`` costs a single sketch.

Which events count (the Datadog convention):

- ``count`` counts every event handed to ``AggregationSet.add`` - i.e. every event
  matching the rollup filter - whether or not it carries the measure.
- measure aggregations (``sum``, ``avg``, ``min``, ``max``, ``pNN``) only see events
  whose measure is a finite int or float; a missing measure, a string, a bool,
  NaN or an infinity is ignored by them. ``avg`` divides by the number of such
  values, not by ``count``. With no values, ``sum`` is 0.0 and the others are None.
- ``cardinality(attr)`` counts the distinct values of ``attr`` read from the event
  (dotted path; lists count each element), independently of the measure.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, ClassVar

import orjson

from pipeline.query.paths import MISSING, compile_many, compile_through_list, compile_values
from pipeline.rollups.sketches import CardinalitySketch, QuantileSketch, canonical_item
from pipeline.rollups.values import PLAIN, scalar

State = dict[str, Any]


def as_measure(value: Any) -> float | None:
    """The measure as a float, or None when it is not a finite number (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class Aggregation:
    """Base: a named aggregation over one state slot."""

    #: The state slot this aggregation reads; aggregations with equal slots share state.
    slot: str = ""
    #: True when ``add`` takes the measure value (False: it takes something else).
    uses_measure: ClassVar[bool] = True

    def __init__(self, name: str) -> None:
        self.name = name

    def initialize(self) -> Any:
        """The empty state."""
        raise NotImplementedError

    def add(self, state: Any, value: Any) -> Any:
        """The state after adding ``value``."""
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        """The state of both inputs; may reuse and return ``a``, never changes ``b``."""
        raise NotImplementedError

    def add_many(self, state: Any, values: list[Any]) -> Any:
        """The state after adding every value in turn (subclasses do it faster)."""
        for value in values:
            state = self.add(state, value)
        return state

    def merge_all(self, states: list[Any]) -> Any:
        """A new state merging every one of ``states``, in order; none of them is changed."""
        merged = self.initialize()
        for state in states:
            merged = self.merge(merged, state)
        return merged

    def result(self, state: Any) -> Any:
        """The value reported in rollup records."""
        raise NotImplementedError

    def dump(self, state: Any) -> Any:
        """The state as JSON-friendly data."""
        return state

    def load(self, data: Any) -> Any:
        """Inverse of ``dump``."""
        return data


class Count(Aggregation):
    """Number of events (with or without the measure)."""

    slot = "count"
    uses_measure = False

    def initialize(self) -> int:
        return 0

    def add(self, state: int, value: Any) -> int:
        return state + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, state: int) -> int:
        return state

    def load(self, data: Any) -> int:
        return int(data)


class _CompensatedSum(Aggregation):
    """State (values, sum, compensation) of the measure, with Neumaier summation.

    The compensation term carries the low-order bits plain float addition loses,
    so the result is accurate to a few ulps whatever the number of values and the
    order in which partial states are merged.
    """

    slot = "sum"

    def initialize(self) -> tuple[int, float, float]:
        return (0, 0.0, 0.0)

    def add(self, state: tuple[int, float, float], value: float) -> tuple[int, float, float]:
        n, s, c = state
        t = s + value
        # Neumaier: recover the part of the smaller operand that t could not hold.
        c += (s - t) + value if abs(s) >= abs(value) else (value - t) + s
        return (n + 1, t, c)

    def add_many(self, state: tuple[int, float, float], values: list[float]) -> tuple[int, float, float]:
        n, s, c = state
        for value in values:  # the same steps as ``add``, without a call and a tuple per value
            t = s + value
            c += (s - t) + value if abs(s) >= abs(value) else (value - t) + s
            s = t
        return (n + len(values), s, c)

    def merge(self, a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
        _, s, c = self.add(a, b[1])
        return (a[0] + b[0], s, c + b[2])

    def dump(self, state: tuple[int, float, float]) -> dict[str, Any]:
        return {"n": state[0], "sum": state[1], "comp": state[2]}

    def load(self, data: Any) -> tuple[int, float, float]:
        return (int(data["n"]), float(data["sum"]), float(data["comp"]))


class Sum(_CompensatedSum):
    """Sum of the measure (0.0 when no event had it)."""

    def result(self, state: tuple[int, float, float]) -> float:
        return state[1] + state[2]


class Avg(_CompensatedSum):
    """Mean of the measure: compensated sum over the number of measure values."""

    def result(self, state: tuple[int, float, float]) -> float | None:
        return (state[1] + state[2]) / state[0] if state[0] else None


class Min(Aggregation):
    """Smallest measure value."""

    slot = "min"

    def initialize(self) -> float | None:
        return None

    def add(self, state: float | None, value: float) -> float:
        return value if state is None or value < state else state

    def add_many(self, state: float | None, values: list[float]) -> float | None:
        return self.add(state, min(values)) if values else state

    def merge(self, a: float | None, b: float | None) -> float | None:
        return a if b is None else self.add(a, b)

    def result(self, state: float | None) -> float | None:
        return state


class Max(Min):
    """Largest measure value."""

    slot = "max"

    def add(self, state: float | None, value: float) -> float:
        return value if state is None or value > state else state

    def add_many(self, state: float | None, values: list[float]) -> float | None:
        return self.add(state, max(values)) if values else state


class Percentile(Aggregation):
    """A quantile of the measure from the shared DDSketch (1% relative accuracy)."""

    slot = "ddsketch"

    def __init__(self, name: str, q: float) -> None:
        super().__init__(name)
        self.q = q

    def initialize(self) -> QuantileSketch:
        return QuantileSketch()

    def add(self, state: QuantileSketch, value: float) -> QuantileSketch:
        state.add(value)
        return state

    def add_many(self, state: QuantileSketch, values: list[float]) -> QuantileSketch:
        state.add_many(values)
        return state

    def merge(self, a: QuantileSketch, b: QuantileSketch) -> QuantileSketch:
        a.merge(b)
        return a

    def result(self, state: QuantileSketch) -> float | None:
        return state.quantile(self.q)

    def dump(self, state: QuantileSketch) -> dict[str, Any]:
        return state.to_dict()

    def load(self, data: Any) -> QuantileSketch:
        return QuantileSketch.from_dict(data)


class _AttributeAggregation(Aggregation):
    """An aggregation over the values of an event attribute rather than over the measure."""

    uses_measure = False

    def __init__(self, name: str, attr: str) -> None:
        super().__init__(name)
        self.attr = attr
        #: The values of ``attr`` in an event: lists are flattened at every level, nulls skipped.
        self.values = compile_values(attr)
        #: The raw values at ``attr`` of a list of events (scalars, lists, objects, or MISSING).
        self.get_many = compile_many(attr)
        #: Whether a list lies on the way to ``attr`` (only then can a missing raw value hide values).
        self.through_list = compile_through_list(attr)


class Cardinality(_AttributeAggregation):
    """Approximate number of distinct values of an event attribute (HyperLogLog)."""

    def __init__(self, name: str, attr: str) -> None:
        super().__init__(name, attr)
        self.slot = f"hll:{attr}"

    def items(self, events: Sequence[dict[str, Any]], canonical: dict[str, str]) -> set[str]:
        """The distinct ``canonical_item`` texts of ``attr`` in ``events``.

        Strings (the usual ids) are gathered as they are and converted once
        each; ``canonical`` caches their texts across calls. Other values are
        converted one by one, so that ``1``, ``1.0``, ``true`` and ``"1"`` stay
        what ``canonical_item`` makes of them.
        """
        raw = self.get_many(events)
        strings: set[str] = {value for value in raw if value.__class__ is str}
        items: set[str] = set()
        # Anything else (numbers, lists, objects, paths through lists): the full walk. Null has
        # no value, and neither has a missing path unless a list of objects is on its way.
        through = self.through_list
        walk = [
            i
            for i, value in enumerate(raw)
            if value.__class__ is not str
            and value is not None
            and (value is not MISSING or through(events[i]))
        ]
        for index in walk:
            for value in self.values(events[index]):
                if value.__class__ is str:
                    strings.add(value)
                elif (item := canonical_item(value)) is not None:
                    items.add(item)
        for text in strings:
            known = canonical.get(text)
            if known is None:
                known = canonical[text] = str(canonical_item(text))  # a string's item is never None
            items.add(known)
        return items

    def initialize(self) -> CardinalitySketch:
        return CardinalitySketch()

    def add(self, state: CardinalitySketch, value: Any) -> CardinalitySketch:
        state.add(value)
        return state

    def merge(self, a: CardinalitySketch, b: CardinalitySketch) -> CardinalitySketch:
        a.merge(b)
        return a

    def merge_all(self, states: list[CardinalitySketch]) -> CardinalitySketch:
        return CardinalitySketch.union_of(states)

    def result(self, state: CardinalitySketch) -> int:
        return round(state.estimate())

    def dump(self, state: CardinalitySketch) -> str:
        return state.to_base64()

    def load(self, data: Any) -> CardinalitySketch:
        return CardinalitySketch.from_base64(data)


class ValueCounts(_AttributeAggregation):
    """How many events carry each distinct value of an attribute (the facet index's windows).

    An event counts once per distinct value it carries (a list attribute: each
    element); an event without the attribute counts nowhere. Values are JSON
    scalars, anything else is counted by its JSON text. The state is a dict
    value -> count; its result is the number of distinct values. Internal: the
    rollup config does not offer it.
    """

    slot = "values"

    def initialize(self) -> dict[Any, int]:
        return {}

    def count_event(self, state: dict[Any, int], event: dict[str, Any]) -> None:
        """Count the distinct values ``event`` carries."""
        found = self.values(event)
        if len(found) == 1:
            value = found[0]
            if value.__class__ not in PLAIN:
                value = scalar(value)
            state[value] = state.get(value, 0) + 1
            return
        for value in dict.fromkeys(map(scalar, found)):
            state[value] = state.get(value, 0) + 1

    def count_events(self, state: dict[Any, int], events: Sequence[dict[str, Any]]) -> None:
        """``count_event`` for each of ``events``, counting plain scalars in one C-level pass.

        Values are counted in event order either way, so that equal values of
        different types (``1``, ``1.0``, ``true``) keep the one met first.
        """
        found = self.get_many(events)
        try:
            counts = Counter(found)
        except TypeError:  # a list or an object among the values
            counts = None
        if counts is None:  # lists or objects among the values
            self._count_mixed(state, events, found)
            return
        if MISSING in counts:
            # Usually the attribute is just absent (no geo for a private address). Only a path
            # through a list of objects finds values there: then count everything in order.
            through, values = self.through_list, self.values
            if any(
                through(events[i]) and values(events[i]) for i, value in enumerate(found) if value is MISSING
            ):
                self._count_mixed(state, events, found)
                return
            del counts[MISSING]
        counts.pop(None, None)
        for value, count in counts.items():
            state[value] = state.get(value, 0) + count

    def _count_mixed(self, state: dict[Any, int], events: Sequence[dict[str, Any]], found: list[Any]) -> None:
        """``count_event`` for each event, in order; a flat list of scalars (the usual) counted directly."""
        through = self.through_list
        for event, value in zip(events, found, strict=True):
            kind = value.__class__
            if kind is list and all(item.__class__ in PLAIN for item in value):
                for item in dict.fromkeys(value):  # each distinct element once; null is no value
                    if item is not None:
                        state[item] = state.get(item, 0) + 1
            elif kind in PLAIN:
                if value is not None:
                    state[value] = state.get(value, 0) + 1
            elif value is MISSING and not through(event):
                continue  # no value: only a list of objects on the way could hold some
            else:  # an object, a nested list, or a path through a list of objects
                self.count_event(state, event)

    def merge(self, a: dict[Any, int], b: dict[Any, int]) -> dict[Any, int]:
        for value, count in b.items():
            a[value] = a.get(value, 0) + count
        return a

    def merge_all(self, states: list[dict[Any, int]]) -> dict[Any, int]:
        merged: dict[Any, int] = {}
        for state in states:
            self.merge(merged, state)
        return merged

    def result(self, state: dict[Any, int]) -> int:
        return len(state)

    def dump(self, state: dict[Any, int]) -> list[list[Any]]:
        """``[[value, count], ...]`` in the order of the values' JSON text (equal states, equal bytes)."""
        return [[value, state[value]] for value in sorted(state, key=orjson.dumps)]

    def load(self, data: Any) -> dict[Any, int]:
        return {value: int(count) for value, count in data}


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
        self.paths = tuple(agg.attr for agg in owners.values() if isinstance(agg, _AttributeAggregation))

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
