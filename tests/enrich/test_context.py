"""Global context merges into the action's context; the action's own keys win."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.enrich.context import GlobalContextEnrichment, merge_context


@pytest.mark.parametrize(
    ("global_context", "own", "expected"),
    [
        ({"plan": "pro"}, {"value": 42.12}, {"plan": "pro", "value": 42.12}),
        ({"plan": "pro"}, {"plan": "free"}, {"plan": "free"}),
        ({}, {"value": 1}, {"value": 1}),
        ({"a": 1}, {}, {"a": 1}),
        ({"ab": {"test": "A", "cohort": 3}}, {"ab": {"test": "B"}}, {"ab": {"test": "B", "cohort": 3}}),
        ({"ab": {"test": "A"}}, {"ab": "off"}, {"ab": "off"}),
        ({"ab": "off"}, {"ab": {"test": "B"}}, {"ab": {"test": "B"}}),
        ({"items": ["x"]}, {"items": ["tomato"]}, {"items": ["tomato"]}),
        ({"n": None}, {"n": 0}, {"n": 0}),
    ],
)
def test_merge_table(global_context: dict[str, Any], own: dict[str, Any], expected: dict[str, Any]) -> None:
    before = repr((global_context, own))
    assert merge_context(global_context, own) == expected
    assert repr((global_context, own)) == before  # inputs are not modified


def test_enrichment_merges_and_removes_global_context() -> None:
    event = {"context": {"value": 42.12, "plan": "free"}, "global_context": {"plan": "pro", "team": "web"}}
    warnings: list[dict[str, str]] = []
    GlobalContextEnrichment().enrich(event, warnings)
    assert event == {"context": {"value": 42.12, "plan": "free", "team": "web"}}
    assert warnings == []


def test_global_context_without_own_context() -> None:
    event: dict[str, Any] = {"global_context": {"team": "web"}}
    GlobalContextEnrichment().enrich(event, [])
    assert event == {"context": {"team": "web"}}


def test_events_without_global_context_are_untouched() -> None:
    event = {"context": {"value": 1}}
    enrichment = GlobalContextEnrichment()
    enrichment.enrich(event, [])
    assert event == {"context": {"value": 1}}
    assert enrichment.stats() == {"merged": 0}


def test_non_object_global_context_is_kept_with_a_warning() -> None:
    event: dict[str, Any] = {"context": {"value": 1}, "global_context": ["not", "an", "object"]}
    warnings: list[dict[str, str]] = []
    GlobalContextEnrichment().enrich(event, warnings)
    assert event["global_context"] == ["not", "an", "object"]
    assert event["context"] == {"value": 1}
    assert warnings and warnings[0]["path"] == "global_context"
