"""Group and facet values: scalars as they are, anything else by one canonical JSON text."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.rollups.values import PLAIN, scalar


@pytest.mark.parametrize("value", [None, "France", "", 0, -3, 42.12, True, False, 2**70])
def test_scalars_stay_as_they_are(value: Any) -> None:
    assert scalar(value) is value


def test_objects_are_grouped_by_json_text_with_sorted_keys() -> None:
    assert scalar({"b": 1, "a": [1, "x"]}) == '{"a":[1,"x"],"b":1}'
    # Key order does not split groups.
    assert scalar({"a": [1, "x"], "b": 1}) == scalar({"b": 1, "a": [1, "x"]})


def test_lists_keep_their_order() -> None:
    assert scalar(["tomato", "strawberries"]) == '["tomato","strawberries"]'
    assert scalar(["tomato", "strawberries"]) != scalar(["strawberries", "tomato"])


def test_plain_lists_exactly_the_types_scalar_keeps() -> None:
    samples = [None, "s", 1, 1.5, True, [1], {"a": 1}, (1,)]
    for value in samples:
        assert (type(value) in PLAIN) is (scalar(value) is value), value
