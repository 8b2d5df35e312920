"""The rollup config: the default loads; every error is named with rollup, key and column, all at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ConfigError
from pipeline.rollups.config import (
    AggregationSpec,
    RollupConfig,
    RollupConfigError,
    default_config_path,
    format_duration,
    load_rollup_config,
    parse_duration,
    parse_rollup_config,
)

ALLOWED = "count, sum, avg, min, max, p50, p75, p90, p95, p99, cardinality(<path>)"
CHECKOUT_ROLLUP: dict[str, Any] = {
    "name": "cart_value_by_country",
    "filter": "@action.target.name:checkout",
    "measure": "context.value",
    "group_by": ["geo.country"],
    "aggregations": [
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "p50",
        "p75",
        "p90",
        "p95",
        "p99",
        "cardinality(usr.id)",
    ],
    "intervals": ["1m", "1h", "1d"],
}


def config(*rollups: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A config with the DESIGN.md facets and measure around the given rollups."""
    return {
        "facets": ["action.target.name", "geo.country", "browser.name", "context.items"],
        "measures": [{"path": "context.value", "unit": "EUR"}],
        "rollups": list(rollups),
        **top,
    }


def errors_of(source: Any) -> tuple[str, ...]:
    with pytest.raises(RollupConfigError) as err:
        parse_rollup_config(source)
    assert isinstance(err.value, ConfigError)
    for line in err.value.errors:
        assert line in str(err.value)
    return err.value.errors


def test_default_config_loads() -> None:
    cfg = load_rollup_config(default_config_path())
    checkout, by_name = cfg.rollups
    assert checkout.name == "cart_value_by_country"
    assert checkout.filter.text == "@action.target.name:checkout"
    assert checkout.filter.matches({"action": {"target": {"name": "checkout"}}})
    assert checkout.measure == "context.value"
    assert checkout.group_by == ("geo.country",)
    assert [a.name for a in checkout.aggregations] == CHECKOUT_ROLLUP["aggregations"]
    assert checkout.intervals == (60, 3600, 86400)
    assert by_name.measure is None
    assert by_name.filter.matches({})
    assert by_name.group_by == ("action.target.name",)
    assert [f.path for f in cfg.facets] == [
        "action.target.name",
        "geo.country",
        "browser.name",
        "device.type",
        "os.name",
        "context.items",
        "view.url_path_group",
    ]
    assert cfg.measures[0].path == "context.value"
    assert cfg.measures[0].unit == "EUR"
    assert (cfg.grace_seconds, cfg.retention_seconds) == (60, 2 * 86400)


def test_design_example_parses_from_yaml() -> None:
    text = """
facets:   [action.target.name, geo.country, browser.name, context.items]
measures: [{path: context.value, unit: EUR}]
rollups:
  - name: cart_value_by_country
    filter: "@action.target.name:checkout"
    measure: context.value
    group_by: [geo.country]
    aggregations: [count, sum, avg, min, max, p50, p75, p90, p95, p99, cardinality(usr.id)]
    intervals: [1m, 1h, 1d]
grace: 10s
retention: 2d
"""
    cfg = parse_rollup_config(text)
    assert cfg.grace_seconds == 10
    assert cfg.rollups[0].aggregations[-1] == AggregationSpec(kind="cardinality", path="usr.id")
    assert cfg.rollups[0].aggregations[8].quantile == 0.95
    assert not cfg.rollups[0].aggregations[0].needs_measure


def test_models_are_frozen_and_round_trip() -> None:
    cfg = parse_rollup_config(config(CHECKOUT_ROLLUP))
    with pytest.raises(ValueError):
        cfg.rollups[0].name = "other"  # type: ignore[misc]
    dumped = cfg.model_dump(by_alias=True)
    assert dumped["rollups"][0]["filter"] == "@action.target.name:checkout"
    assert dumped["rollups"][0]["aggregations"][-1] == "cardinality(usr.id)"
    assert parse_rollup_config(dumped) == cfg


def test_empty_config_is_valid() -> None:
    assert parse_rollup_config("") == RollupConfig()
    assert parse_rollup_config({}).rollups == ()


def test_count_only_rollup_needs_no_measure() -> None:
    rollup = {"name": "n", "aggregations": ["count", "cardinality(usr.id)"], "intervals": ["5m"]}
    assert parse_rollup_config(config(rollup)).rollups[0].measure is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"filter": "@action.target.name:checkout)"},
            "rollups[0] (cart_value_by_country).filter: unexpected ')' at column 29",
        ),
        (
            {"filter": "checkout"},
            "rollups[0] (cart_value_by_country).filter: free-text search is not supported; "
            "use @attribute:value (got 'checkout') at column 1",
        ),
        (
            {"aggregations": ["count", "sum", "avg", "p42"]},
            "rollups[0] (cart_value_by_country).aggregations[3]: "
            f"unknown aggregation 'p42' (allowed: {ALLOWED})",
        ),
        (
            {"aggregations": ["cardinality(usr..id)"]},
            "rollups[0] (cart_value_by_country).aggregations[0]: bad aggregation 'cardinality(usr..id)': "
            "bad path 'usr..id': empty segment",
        ),
        ({"aggregations": []}, "rollups[0] (cart_value_by_country).aggregations: "),
        (
            {"aggregations": ["sum", "sum"]},
            "rollups[0] (cart_value_by_country).aggregations: 'sum' appears twice",
        ),
        (
            {"intervals": ["1x"]},
            "rollups[0] (cart_value_by_country).intervals[0]: bad interval '1x' (use e.g. 30s, 1m, 1h, 1d)",
        ),
        ({"intervals": "1m"}, "rollups[0] (cart_value_by_country).intervals: expected a list, got str"),
        ({"intervals": ["1m", "60s"]}, "rollups[0] (cart_value_by_country).intervals: 60 appears twice"),
        ({"name": "Cart Value"}, "rollups[0] (Cart Value).name: bad name 'Cart Value': use 1 to 64 of a-z"),
        (
            {"measure": "context.price"},
            "rollups[0] (cart_value_by_country).measure: 'context.price' is not a declared measure "
            "(declared: context.value); add it under measures",
        ),
        (
            {"measure": None},
            "rollups[0] (cart_value_by_country).measure: required by sum, avg, min, max, p50, p75, p90, "
            "p95, p99 (only count and cardinality work without a measure)",
        ),
        (
            {"group_by": ["geo..country"]},
            "rollups[0] (cart_value_by_country).group_by[0]: bad path 'geo..country'",
        ),
        ({"group_by": ["a", "b", "c", "d", "e"]}, "rollups[0] (cart_value_by_country).group_by: "),
        ({"group_by": ["a", "a"]}, "rollups[0] (cart_value_by_country).group_by: 'a' appears twice"),
        ({"fliter": "@a:b"}, "rollups[0] (cart_value_by_country).fliter: unknown key"),
        ({"name": None}, "rollups[0].name: "),
    ],
)
def test_rollup_errors_name_rollup_and_key(change: dict[str, Any], expected: str) -> None:
    rollup = {**CHECKOUT_ROLLUP, **change}
    rollup = {k: v for k, v in rollup.items() if v is not None or k not in ("measure", "name")}
    errors = errors_of(config(rollup))
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        (
            {"facets": ["geo.country", "geo country", "geo..country"]},
            "facets[2]: bad path 'geo..country': empty segment",
        ),
        (
            {"facets": ["geo.country", "geo country"]},
            "facets[1]: bad path 'geo country': a space is not allowed",
        ),
        ({"facets": [{"path": "a", "kind": "x"}]}, "facets[0].kind: unknown key"),
        ({"facets": ["a", "@a"]}, "facets: 'a' appears twice"),
        ({"measures": [{"unit": "EUR"}]}, "measures[0].path: required"),
        ({"grace": "1x"}, "grace: bad duration '1x'"),
        ({"retention": "-1d"}, "retention: bad duration '-1d'"),
        ({"retention": "1h"}, "retention: 1h is shorter than the longest interval (1d) plus grace"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"rollups": [5]}, "rollups[0]: expected a mapping, got int"),
    ],
)
def test_top_level_errors(top: dict[str, Any], expected: str) -> None:
    errors = errors_of({**config(CHECKOUT_ROLLUP), **top})
    assert any(e.startswith(expected) for e in errors), errors


def test_every_error_is_reported_at_once() -> None:
    text = """
facets: [action.target.name, geo..country]
measures: [{path: context.value, unit: EUR}]
rollups:
  - name: cart_value_by_country
    filter: "(@action.target.name:checkout"
    measure: context.value
    aggregations: [count, p42]
    intervals: [1m, 1x]
  - name: other
    filter: "@geo.country:France)"
    measure: context.price
    aggregations: [count]
    intervals: [0m]
  - name: other
    aggregations: [avg]
    intervals: [1h]
grace: soon
"""
    errors = errors_of(text)
    assert errors == (
        "facets[1]: bad path 'geo..country': empty segment",
        "rollups[0] (cart_value_by_country).filter: unclosed '(' at column 1",
        f"rollups[0] (cart_value_by_country).aggregations[1]: unknown aggregation 'p42' (allowed: {ALLOWED})",
        "rollups[0] (cart_value_by_country).intervals[1]: bad interval '1x' (use e.g. 30s, 1m, 1h, 1d)",
        "rollups[1] (other).filter: unexpected ')' at column 20",
        "rollups[1] (other).measure: 'context.price' is not a declared measure (declared: context.value); "
        "add it under measures",
        "rollups[1] (other).intervals[0]: bad interval '0m': must be positive",
        "rollups[2] (other).measure: required by avg (only count and cardinality work without a measure)",
        "grace: bad duration 'soon' (use e.g. 30s, 1m, 1h, 1d)",
        "rollups[2] (other).name: duplicate name (also rollups[1])",
    )


def test_duplicate_names_alone() -> None:
    rollup = {"name": "n", "aggregations": ["count"], "intervals": ["1m"]}
    assert errors_of(config(rollup, rollup)) == ("rollups[1] (n).name: duplicate name (also rollups[0])",)


def test_direct_model_validation_checks_measures() -> None:
    with pytest.raises(ValueError, match=r"'context\.price' is not a declared measure"):
        RollupConfig.model_validate(config({**CHECKOUT_ROLLUP, "measure": "context.price"}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not: [valid", "not valid YAML"),
        ("- a\n- b", "expected a mapping at the top, got list"),
    ],
)
def test_bad_documents(text: str, expected: str) -> None:
    assert errors_of(text)[0].startswith(expected)


def test_load_reports_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rollups.yaml"
    path.write_text("facets: [a..b]\n")
    with pytest.raises(RollupConfigError, match=r"invalid rollup config \(.*rollups.yaml\):\n  facets\[0\]"):
        load_rollup_config(path)
    with pytest.raises(RollupConfigError, match="cannot read"):
        load_rollup_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("5m", 300),
        ("15m", 900),
        ("1h", 3600),
        ("6h", 21600),
        ("1d", 86400),
        ("2d", 172800),
        ("7d", 604800),
        (60, 60),
        ("90s", 90),  # 86400 / 90 = 960 windows a day
        ("0m", "must be positive"),
        ("0s", "must be positive"),
        ("1x", "(use e.g. 30s, 1m, 1h, 1d)"),
        ("-1h", "(use e.g. 30s, 1m, 1h, 1d)"),
        ("1.5h", "(use e.g. 30s, 1m, 1h, 1d)"),
        ("1 h", "(use e.g. 30s, 1m, 1h, 1d)"),
        ("", "(use e.g. 30s, 1m, 1h, 1d)"),
        (True, "(use e.g. 30s, 1m, 1h, 1d)"),
        ("8d", "at most 7d"),
        ("7m", "must divide a day evenly"),
        ("25h", "must divide a day evenly"),
    ],
)
def test_intervals(interval: Any, seconds: int | str) -> None:
    rollup = {"name": "n", "aggregations": ["count"], "intervals": [interval]}
    data = config(rollup, retention="30d")
    if isinstance(seconds, int):
        assert parse_rollup_config(data).rollups[0].intervals == (seconds,)
    else:
        (error,) = errors_of(data)
        assert error.startswith(f"rollups[0] (n).intervals[0]: bad interval {interval!r}")
        assert seconds in error


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (60, "1m"), (90, "90s"), (3600, "1h"), (86400, "1d")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
