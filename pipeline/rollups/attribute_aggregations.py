"""Aggregations over an event attribute rather than over the measure.

``cardinality(attr)`` keeps a HyperLogLog of the attribute's values; ``values(attr)``
keeps exact counts per value (the facet index). Both read the attribute with the
compiled path readers of ``pipeline.query.paths``: lists are flattened at every
level and nulls skipped, so a list counts each of its elements.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.query.paths import MISSING, compile_many, compile_through_list, compile_values
from pipeline.rollups.aggregations import Aggregation
from pipeline.rollups.sketches import CardinalitySketch, canonical_item
from pipeline.rollups.values import PLAIN, scalar


class AttributeAggregation(Aggregation):
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


class Cardinality(AttributeAggregation):
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


class ValueCounts(AttributeAggregation):
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
