"""The explorer's monitors panel in a real browser, against the JSON of GET /api/v1/monitors.

The monitor runtime of `serve` is not needed here: this test serves the page's
routes with a /api/v1/monitors of its own that answers the documented shape
(docs/monitors.md), filled by the real evaluator (``pipeline.monitors``) over
values the test sets, with event records valid against their schema. The
values start below the thresholds and cross them after a few requests: the
page, refreshing live, must then show the monitor ALERT with the group at
fault and the transition, with no console error. The end-to-end test on the
real broker is test_explorer_browser.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web

from pipeline.monitors.config import load_monitors
from pipeline.monitors.evaluate import Evaluator
from pipeline.monitors.model import Group, Monitor
from pipeline.rollups.config import default_config_path, format_duration, load_rollup_config
from pipeline.schemas import MONITOR_EVENT, validate_record
from pipeline.serve import api, explorer, health
from pipeline.serve.service import ViewService
from pipeline.view.request import Limits
from tests.serve.browser import Site, check_clean, drive, require_browser, running_app
from tests.serve.test_api import CATALOG, filled_store

WORST = ("ALERT", "NO_DATA", "WARN", "OK")
FRANCE: Group = (("geo.country", "France"),)
SPAIN: Group = (("geo.country", "Spain"),)
#: How many answers of /api/v1/monitors come before the values cross the thresholds.
CALM_ANSWERS = 3


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    require_browser()


class Values:
    """The evaluator's source: cart values calm at first, France's past the alert after a while."""

    def __init__(self) -> None:
        self.answers = 0

    def values(self, monitor: Monitor, start_ms: int, end_ms: int) -> Mapping[Group, float | None]:
        if monitor.name == "cart_value_high":
            france = 120.0 if self.answers < CALM_ANSWERS else 250.0
            return {FRANCE: france, SPAIN: 90.0}
        return {(): 12.0}


def monitors_body(evaluator: Evaluator, events: list[dict[str, Any]], now_ms: int) -> dict[str, Any]:
    """The documented answer of GET /api/v1/monitors from the evaluator's states and events."""
    states: dict[str, list[dict[str, Any]]] = {name: [] for name in evaluator.monitors}
    for record in evaluator.snapshot():
        states[record["monitor"]].append(
            {
                "group": record["group"],
                "status": record["status"],
                "value": record["value"],
                "since": record["since"],
            }
        )
    monitors = []
    for m in evaluator.monitors.values():
        thresholds = {k: v for k, v in m.thresholds().items() if k != "comparator"}
        groups = states[m.name]
        status = next((s for s in WORST if any(g["status"] == s for g in groups)), "OK")
        monitors.append(
            {
                "name": m.name,
                "message": m.message,
                "rollup": m.rollup,
                "aggregation": m.aggregation,
                "filter": m.filter.text or None,
                "multi": m.multi,
                "window": format_duration(m.window_ms // 1000),
                "comparator": m.comparator,
                "thresholds": thresholds,
                "status": status,
                "groups": groups,
            }
        )
    return {"evaluated_at": now_ms, "interval_s": 1.0, "monitors": monitors, "events": events[::-1][:50]}


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, list[dict[str, Any]]]]:
    config = load_rollup_config(default_config_path())
    evaluator = Evaluator(load_monitors(default_config_path(), config))
    source = Values()
    events: list[dict[str, Any]] = []
    bodies: list[dict[str, Any]] = []

    async def monitors(request: web.Request) -> web.Response:
        now = int(time.time() * 1000)
        result = evaluator.evaluate(now, source)
        source.answers += 1
        for event in result.events:
            assert validate_record(MONITOR_EVENT, event) == [], event
        events.extend(result.events)
        bodies.append(monitors_body(evaluator, events, now))
        return web.json_response(bodies[-1])

    service = ViewService(filled_store()[0], CATALOG, Limits(), reader=None)
    app = web.Application()
    health.add_routes(app, service)
    api.add_routes(app, service)
    explorer.add_routes(app, service)
    app.router.add_get("/api/v1/monitors", monitors)

    with running_app(app) as url:
        yield Site({}, url, tmp_path_factory.mktemp("monitors-page")), bodies


def test_monitor_states_and_transitions_show_live(page: tuple[Site, list[dict[str, Any]]]) -> None:
    server, bodies = page
    report = drive(server, [{"name": "monitors-calm"}], "--wait-monitor", "cart_value_high=ALERT")
    check_clean(report, server)
    calm = report["steps"][0]
    assert calm["monitors_state"] == "ok"
    shown = {m["name"]: m["status"] for m in calm["monitors"]}
    assert set(shown) == {m["name"] for m in bodies[0]["monitors"]} and shown["cart_value_high"] != "ALERT"
    alert = report["monitor"]
    # The page shows the last answer it got: find it among those served, by the states it shows.
    statuses = {m["name"]: m["status"] for m in alert["monitors"]}
    body = next(b for b in reversed(bodies) if {m["name"]: m["status"] for m in b["monitors"]} == statuses)
    assert statuses["cart_value_high"] == "ALERT"
    cart = next(m for m in alert["monitors"] if m["name"] == "cart_value_high")
    # Only the groups not OK are listed under a monitor: France, at ALERT.
    assert cart["groups"] == [{"group": {"geo.country": "France"}, "status": "ALERT"}]
    expected = [{"monitor": e["monitor"], "to": e["to"]} for e in body["events"][:10]]
    assert alert["events"] == expected and {"monitor": "cart_value_high", "to": "ALERT"} in expected
