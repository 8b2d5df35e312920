"""Attribute aggregations: the values a path reads, value counts and cardinality items."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rollups.attribute_aggregations import Cardinality, ValueCounts
from pipeline.rollups.sketches import canonical_item


@pytest.mark.parametrize(
    ("event", "path", "expected"),
    [
        ({"usr": {"id": "u"}}, "usr.id", ["u"]),
        ({"usr": {}}, "usr.id", []),
        ({"usr": "flat"}, "usr.id", []),
        ({"context": {"items": ["a", "b"]}}, "context.items", ["a", "b"]),
        ({"context": {"items": [{"n": 1}, {"n": 2}, {}]}}, "context.items.n", [1, 2]),
        ({"a": [[1, 2], [3]]}, "a", [1, 2, 3]),
        ({"a": None}, "a", []),
    ],
)
def test_cardinality_values(event: dict[str, Any], path: str, expected: list[Any]) -> None:
    assert Cardinality(f"cardinality({path})", path).values(event) == expected


# What a facet or cardinality path may meet in an event: every JSON shape, and lists of objects.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([1.0, 2.5, -0.0]),
    st.sampled_from(["a", "b", "1"]),
)
_AT_PATH = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=4),
    st.lists(st.lists(_SCALARS, max_size=2), max_size=2),
    st.dictionaries(st.sampled_from(["x", "y"]), _SCALARS, max_size=2),
)


def _reaching(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """What may stand where ``keys`` start: an object leading on, a list of them, or a dead end."""
    if not keys:
        return _AT_PATH
    step = st.builds(lambda value: {keys[0]: value}, _reaching(keys[1:]))
    return st.one_of(step, st.lists(step, max_size=3), st.just({}), st.none(), st.just("flat"))


def _events(path: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Events for ``path``: lists of objects may stand at any step on the way, or the path may stop short."""
    first, *rest = path.split(".")
    event = st.builds(lambda value: {first: value}, _reaching(tuple(rest)))
    return st.lists(st.one_of(event, st.just({})), max_size=25)


_PATHS = ["usr", "usr.id", "usr.a.id"]


@pytest.mark.parametrize("path", _PATHS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_count_events_equals_counting_each_event(path: str, data: st.DataObject) -> None:
    events = data.draw(_events(path))
    counter = ValueCounts(f"values({path})", path)
    one_by_one: dict[Any, int] = {"b": 1}
    at_once: dict[Any, int] = {"b": 1}
    for event in events:
        counter.count_event(one_by_one, event)
    counter.count_events(at_once, events)
    assert orjson.dumps(counter.dump(at_once)) == orjson.dumps(counter.dump(one_by_one))


@pytest.mark.parametrize("path", _PATHS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_cardinality_items_are_the_canonical_texts_of_every_value(path: str, data: st.DataObject) -> None:
    events = data.draw(_events(path))
    card = Cardinality(f"cardinality({path})", path)
    expected = {canonical_item(v) for e in events for v in card.values(e)} - {None}
    cache: dict[str, str] = {}
    assert card.items(events, cache) == expected
    assert card.items(events, cache) == expected  # from the cache as well
