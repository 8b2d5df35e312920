"""The monitors section: parsed against the rollups, every error named with monitor, key, line, column."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.monitors.config import MonitorConfigError, load_monitors, parse_monitors
from pipeline.monitors.model import Monitor, Webhook
from pipeline.rollups.config import RollupConfig, default_config_path, load_rollup_config, parse_rollup_config

ROLLUPS = """\
measures: [context.value]
rollups:
  - name: cart_value_by_country
    filter: "@action.target.name:checkout"
    measure: context.value
    group_by: [geo.country]
    aggregations: [count, avg, p95]
    intervals: [1m, 1h]
  - name: hourly
    aggregations: [count]
    intervals: [1h]
"""


CART_AVG = {"rollup": "cart_value_by_country", "aggregation": "avg"}


def monitor(**changes: Any) -> dict[str, Any]:
    """A valid monitor on cart_value_by_country, with ``changes`` applied (None deletes a key)."""
    out: dict[str, Any] = {
        "name": "cart_high",
        "query": {"rollup": "cart_value_by_country", "aggregation": "avg"},
        "window": "15m",
        "comparator": ">",
        "thresholds": {"alert": 100, "warn": 80},
    }
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


def text_of(*monitors: dict[str, Any]) -> str:
    """The rollups above plus a monitors section, as YAML text (so that lines are known)."""
    return ROLLUPS + yaml.safe_dump({"monitors": list(monitors)}, sort_keys=False)


def rollups() -> RollupConfig:
    return parse_rollup_config(ROLLUPS)


def errors_of(*monitors: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(MonitorConfigError) as err:
        parse_monitors(text_of(*monitors), rollups(), origin="rollups.yaml")
    assert isinstance(err.value, ConfigError)
    assert "invalid monitors config (rollups.yaml)" in str(err.value)
    return err.value.errors


def only_error(*monitors: dict[str, Any]) -> str:
    errors = errors_of(*monitors)
    assert len(errors) == 1, errors
    return errors[0]


def test_a_full_monitor_is_resolved_for_evaluation() -> None:
    spec = monitor(
        query={"rollup": "cart_value_by_country", "aggregation": "p95", "filter": "@geo.country:France"},
        thresholds={"alert": 100, "warn": 80, "alert_recovery": 90, "warn_recovery": 70},
        no_data="10m",
        evaluation_delay="2m",
        renotify="1h",
        webhook={"url": "https://hooks.example/rum", "timeout": "5s", "retries": 2},
        message="cart value high",
    )
    (parsed,) = parse_monitors(text_of(spec), rollups())
    assert parsed == Monitor(
        name="cart_high",
        rollup="cart_value_by_country",
        aggregation="p95",
        comparator=">",
        alert=100,
        warn=80,
        alert_recovery=90,
        warn_recovery=70,
        filter=parsed.filter,
        multi=True,
        group_by=("geo.country",),
        window_ms=900_000,
        step_ms=60_000,
        delay_ms=120_000,
        no_data_ms=600_000,
        renotify_ms=3_600_000,
        webhook=Webhook("https://hooks.example/rum", 5.0, 2),
        message="cart value high",
    )
    assert parsed.filter.text == "@geo.country:France"
    assert parsed.filter.matches({"geo": {"country": "France"}})


def test_defaults_and_a_mapping_source() -> None:
    data = yaml.safe_load(text_of(monitor(query={"rollup": "hourly", "aggregation": "count", "multi": False},
                                          window="2h", thresholds={"alert": 5})))  # fmt: skip
    (parsed,) = parse_monitors(data, rollups())
    assert (parsed.multi, parsed.group_by, parsed.step_ms, parsed.delay_ms) == (False, (), 3_600_000, 0)
    assert (parsed.warn, parsed.no_data_ms, parsed.renotify_ms, parsed.webhook) == (None, None, None, None)


def test_no_monitors_section_means_no_monitors() -> None:
    assert parse_monitors(ROLLUPS, rollups()) == ()
    assert parse_monitors(ROLLUPS + "monitors:\n", rollups()) == ()


def test_the_rollup_parser_leaves_the_monitors_section_alone() -> None:
    config = parse_rollup_config(text_of(monitor(colour="blue")))
    assert [r.name for r in config.rollups] == ["cart_value_by_country", "hourly"]


def test_the_default_config_file_has_valid_monitors() -> None:
    path = default_config_path()
    monitors = load_monitors(path, load_rollup_config(path))
    assert {m.name for m in monitors} == {"cart_value_high", "checkouts_stopped", "demo_checkout_rush"}


def test_an_aggregation_its_rollup_lacks() -> None:
    error = only_error(monitor(query={"rollup": "cart_value_by_country", "aggregation": "p99"}))
    assert error.startswith(
        "monitors[0] (cart_high).query.aggregation: rollup 'cart_value_by_country' lacks 'p99'"
    )
    assert "(it has: count, avg, p95)" in error
    # YAML lines: ROLLUPS is 11 lines, "monitors:" line 12, "- name:" 13, "query:" 14, "aggregation:" 16.
    assert error.endswith("(line 16, column 5)")


def test_a_window_over_48_hours() -> None:
    error = only_error(monitor(window="49h"))
    assert error == "monitors[0] (cart_high).window: '49h' is outside 5m to 48h (line 17, column 3)"
    assert only_error(monitor(window="4m")).startswith("monitors[0] (cart_high).window: '4m' is outside")
    assert parse_monitors(text_of(monitor(window="48h")), rollups())[0].window_ms == 48 * 3_600_000


@pytest.mark.parametrize(
    ("comparator", "thresholds", "message"),
    [
        (">", {"alert": 100, "warn": 120}, "thresholds.warn: 120 is beyond alert 100 for '>': warn must be"),
        (">=", {"alert": 100, "warn": 100}, "thresholds.warn: 100 is beyond alert 100 for '>='"),
        ("<", {"alert": 10, "warn": 5}, "thresholds.warn: 5 is beyond alert 10 for '<': warn must be abo"),
        (">", {"alert": 100, "alert_recovery": 100}, "thresholds.alert_recovery: 100 must be below alert"),
        ("<=", {"alert": 10, "alert_recovery": 9}, "thresholds.alert_recovery: 9 must be above alert 10"),
        (">", {"alert": 9, "warn": 8, "warn_recovery": 8.5}, "thresholds.warn_recovery: 8.5 must be below"),
        (">", {"alert": 100, "warn_recovery": 85}, "thresholds.warn_recovery: needs a warn threshold"),
        (">", {"warn": 1}, "thresholds.alert: required"),
        (">", {"alert": ".inf"}, "thresholds.alert: Input should be a finite number"),
    ],
)
def test_thresholds_that_contradict_each_other(
    comparator: str, thresholds: dict[str, Any], message: str
) -> None:
    if thresholds.get("alert") == ".inf":
        thresholds["alert"] = float("inf")
    error = only_error(monitor(comparator=comparator, thresholds=thresholds))
    assert error.startswith(f"monitors[0] (cart_high).{message}"), error
    assert error.endswith(")") and "(line " in error


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example/x", "the scheme must be http or https, not 'ftp'"),
        ("hooks.example/x", "the scheme must be http or https, not 'none'"),
        ("http:///x", "no host"),
        ("http://hooks.example:99999/x", "the port is not a number from 0 to 65535"),
        ("http://hooks.example/a b", "contains spaces"),
    ],
)
def test_an_invalid_webhook_url(url: str, reason: str) -> None:
    error = only_error(monitor(webhook={"url": url}))
    assert error.startswith(f"monitors[0] (cart_high).webhook.url: bad URL {url!r}: {reason} (line ")


def test_webhook_limits() -> None:
    errors = errors_of(monitor(webhook={"url": "http://h.example", "timeout": "2m", "retries": 11}))
    assert errors[0].startswith("monitors[0] (cart_high).webhook.timeout: '2m' is outside 1s to 1m")
    assert errors[1].startswith("monitors[0] (cart_high).webhook.retries: Input should be less than or equal")


def test_query_checked_against_the_rollup() -> None:
    errors = errors_of(
        monitor(query={"rollup": "nope", "aggregation": "avg"}),
        monitor(name="b", query={**CART_AVG, "filter": "@browser.name:x"}),
        monitor(name="c", query={**CART_AVG, "filter": "@geo.country:("}),
        monitor(name="d", query={"rollup": "hourly", "aggregation": "count"}, window="90m"),
    )  # fmt: skip
    assert errors[0].startswith(
        "monitors[0] (cart_high).query.rollup: unknown rollup 'nope' (rollups: cart_value_by_country, hourly)"
    )
    assert errors[1].startswith("monitors[1] (b).query.filter: browser.name not in the group_by of rollup")
    assert errors[2].startswith("monitors[2] (c).query.filter: ")
    assert "at column 14" in errors[2]
    assert errors[3].startswith("monitors[3] (d).window: 1h30m is not a multiple") or errors[3].startswith(
        "monitors[3] (d).window: 90m is not a multiple"
    )
    assert "smallest interval (1h)" in errors[3]


def test_every_error_at_once_with_cross_checks_on_valid_parts() -> None:
    bad = monitor(window="49h", thresholds={"alert": 100, "warn": 120}, colour="blue")
    bad["query"] = {"rollup": "cart_value_by_country", "aggregation": "p99"}
    errors = errors_of(bad, monitor(name="cart_high"), "not a mapping")  # type: ignore[arg-type]
    keys = [e.split(":")[0] for e in errors]
    assert keys == [
        "monitors[0] (cart_high).window",
        "monitors[0] (cart_high).colour",
        "monitors[0] (cart_high).thresholds.warn",
        "monitors[0] (cart_high).query.aggregation",
        "monitors[1] (cart_high).name",
        "monitors[2]",
    ]
    assert errors[1] == "monitors[0] (cart_high).colour: unknown key (line 22, column 3)"
    assert "duplicate name (also monitors[0])" in errors[4]
    assert "expected a mapping, got str" in errors[5]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Cart-High"}, "(Cart-High).name: bad name 'Cart-High'"),
        ({"query": None}, "(cart_high).query: required"),
        ({"comparator": "=="}, "(cart_high).comparator: Input should be '>', '>=', '<' or '<='"),
        ({"no_data": "30s"}, "(cart_high).no_data: '30s' is outside 1m to 7d"),
        ({"renotify": "soon"}, "(cart_high).renotify: bad duration 'soon'"),
        ({"evaluation_delay": "2d"}, "(cart_high).evaluation_delay: '2d' is outside 0s to 1d"),
    ],
)
def test_bad_keys(changes: dict[str, Any], message: str) -> None:
    assert only_error(monitor(**changes)).startswith(f"monitors[0] {message}")


def test_a_section_that_is_not_a_list() -> None:
    with pytest.raises(MonitorConfigError) as err:
        parse_monitors(ROLLUPS + "monitors: {name: x}\n", rollups())
    assert err.value.errors == ("monitors: expected a list, got dict (line 12, column 11)",)


def test_config_check_reports_monitor_errors(tmp_path: Path) -> None:
    path = tmp_path / "rollups.yaml"
    path.write_text(text_of(monitor(window="49h"), monitor(name="b", webhook={"url": "gopher://x"})))
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert "monitors[0] (cart_high).window: '49h' is outside 5m to 48h (line 17, column 3)" in result.output
    assert "monitors[1] (b).webhook.url: bad URL 'gopher://x'" in result.output


def test_config_check_summarizes_monitors(tmp_path: Path) -> None:
    path = tmp_path / "rollups.yaml"
    path.write_text(text_of(monitor()))
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "monitor cart_high: avg of cart_value_by_country over 15m per group, alert > 100" in result.output


def test_config_check_can_probe_webhook_hosts(tmp_path: Path) -> None:
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()  # the kernel accepts the probe's connection: no server code needed
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        up, down = (f"http://127.0.0.1:{s.getsockname()[1]}/hook" for s in (listening, closed))
        path = tmp_path / "rollups.yaml"
        path.write_text(text_of(monitor(webhook={"url": up}), monitor(name="b", webhook={"url": down})))
        plain = CliRunner().invoke(main, ["config", "check", str(path)])
        probed = CliRunner().invoke(main, ["config", "check", "--probe-webhooks", str(path)])
    assert plain.exit_code == 0, plain.output
    assert probed.exit_code == 1
    assert f"monitor b: webhook.url '{down}': cannot connect to 127.0.0.1:" in probed.output
    assert "monitor cart_high" not in probed.output


def test_the_example_in_the_docs_is_valid() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "monitors.md"
    example = docs.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    path = default_config_path()
    rollups_only = path.read_text().split("\nmonitors:", 1)[0]
    monitors = parse_monitors(rollups_only + "\n" + example, load_rollup_config(path))
    assert [(m.name, m.multi, m.webhook is not None) for m in monitors] == [
        ("cart_value_high", True, True),
        ("checkouts_stopped", False, False),
    ]
