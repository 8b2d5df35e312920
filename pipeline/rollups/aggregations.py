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
from typing import Any, ClassVar

from pipeline.rollups.sketches import QuantileSketch

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
