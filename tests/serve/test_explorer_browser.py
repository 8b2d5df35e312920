"""The explorer page in a real browser: headless Chromium on `rum-pipeline serve` over the real broker.

A worker turns two hours of generated traffic into rollups; `serve` reads them;
tests/browser/explorer.mjs opens the page, makes choices (some with the
keyboard only) and reports what the page showed. Every number in the top-list,
every point of the chart and every facet count must equal what /api/v1/query
and /api/v1/facets answer for the same range, and the page must log no console
error. Screenshots are kept under the test's temporary folder (printed);
RUM_UPDATE_SCREENSHOT=1 also copies the one of the past 4 hours to docs/images/explorer.png.

Needs /usr/bin/chromium and tests/browser/node_modules (``make browser``):
skipped without them unless RUM_REQUIRE_BROWSER is set, as ``make test`` does.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from pipeline.generate import TrafficGenerator
from pipeline.produce import Message
from pipeline.rollups.config import default_config_path
from tests.chaos_helpers import delete_topics, produce_messages, truth_of
from tests.kafka_helpers import CLI, isolated_env, run_worker, settings_from
from tests.serve.browser import ROOT, Site, check_clean, drive, require_browser

pytestmark = pytest.mark.kafka

M, H = 60_000, 3_600_000
#: A monitor of this test's config: more than 20 actions named explorer-burst in 5 minutes.
BURST_MONITOR = {
    "name": "explorer_burst",
    "query": {
        "rollup": "actions_by_name",
        "aggregation": "count",
        "filter": "@action.target.name:explorer-burst",
        "multi": False,
    },
    "window": "5m",
    "comparator": ">",
    "thresholds": {"alert": 20},
    "evaluation_delay": "0s",
    "message": "A burst of explorer-burst actions.",
}


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    require_browser()


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, orjson.loads(body) if body.startswith(b"{") else None


def _start_serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`rum-pipeline serve` on a free port, once it listens; its process and base URL."""
    with open(log, "wb") as out:
        args = [CLI, "serve", "--port", "0"]
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        text = log.read_text(errors="replace")
        found = re.search(r"^serve: listening on (http://\S+)$", text, re.MULTILINE)
        if found:
            return process, found.group(1)
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"serve did not start:\n{log.read_text(errors='replace')}")


def _wait_for_counts(url: str, rollup: str, start: int, end: int, total: int, timeout: float) -> None:
    """Until the view holds ``total`` actions of ``rollup`` in [start, end)."""
    deadline = time.monotonic() + timeout
    got: Any = None
    while time.monotonic() < deadline:
        query = urllib.parse.urlencode({"rollup": rollup, "from": start, "to": end, "agg": "count"})
        status, body = _get(f"{url}/api/v1/query?{query}")
        if status == 200:
            got = sum(g["values"]["count"] for g in body["groups"])
            if got == total:
                return
        time.sleep(1)
    raise AssertionError(f"{got} {rollup} actions in the view, {total} produced")


def _wait_for_monitors(url: str, timeout: float) -> None:
    """Until /api/v1/monitors answers (a 503 while it reads its topics would be a console error)."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status, _ = _get(f"{url}/api/v1/monitors")
        if status in (200, 404):
            return
        time.sleep(0.5)
    raise AssertionError(f"/api/v1/monitors still answers {status}")


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("explorer")
    config = yaml.safe_load(default_config_path().read_text())
    config["monitors"] = [*config.get("monitors", []), BURST_MONITOR]
    (tmp / "rollups.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = isolated_env(tmp, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_ROLLUPS_CONFIG=str(tmp / "rollups.yaml"))
    created = subprocess.run([CLI, "topics", "create"], env=env, capture_output=True, text=True, check=False)
    assert created.returncode == 0, f"topics create failed:\n{created.stdout}{created.stderr}"
    now = int(time.time() * 1000)
    first = now - 2 * H
    generator = TrafficGenerator(seed=11, start_ms=first, span_ms=2 * H - M // 2)
    payloads = produce_messages(env, [Message(m.key, m.value) for m in generator.messages(4000)])
    truth = truth_of(settings_from(env), payloads)
    start, end = first - first % M, now - now % M + M
    total = sum(
        count
        for (rollup, interval, window, _), count in truth.counts.items()
        if rollup == "actions_by_name" and interval == "1m" and start <= window < end
    )
    assert total > 3000
    try:
        with run_worker(env, tmp / "worker.log") as worker:
            serve, url = _start_serve(env, tmp / "serve.log")
            try:
                _wait_for_counts(url, "actions_by_name", start, end, total, timeout=240)
                _wait_for_monitors(url, timeout=60)
                yield Site(env, url, tmp)
                assert serve.poll() is None, (tmp / "serve.log").read_text()
                assert worker.process.poll() is None, worker.tail()
            finally:
                serve.terminate()
                serve.wait(30)
    finally:
        # The shared broker keeps files open for every partition: leave it no topics of ours.
        delete_topics(settings_from(env))


def _shown(text: str) -> float | None:
    return None if text == "–" else float(text.replace(",", ""))


def _check_step(explorer: Site, step: dict[str, Any]) -> dict[str, Any]:
    """The step's table, chart and facets equal the API's answers for the range the page showed."""
    params = dict(urllib.parse.parse_qsl(step["params"]))
    assert params.pop("last") == step["controls"]["range"]
    params.update({"from": step["from_ms"], "to": step["to_ms"]})
    status, answer = _get(f"{explorer.url}/api/v1/query?{urllib.parse.urlencode(params)}")
    assert status == 200, answer
    assert (answer["from_ms"], answer["to_ms"]) == (step["from_ms"], step["to_ms"])
    where = step["name"]
    # The top-list: the same groups in the same order, each value exact, each text that value.
    assert [r["group"] for r in step["rows"]] == [g["group"] for g in answer["groups"]], where
    assert len(step["rows"]) <= int(step["controls"]["top"]), where
    for row, group in zip(step["rows"], answer["groups"], strict=True):
        assert [c["agg"] for c in row["cells"]] == answer["aggregations"], where
        for cell in row["cells"]:
            expected = group["values"][cell["agg"]]
            assert cell["value"] == expected, (where, row["group"], cell)
            shown = _shown(cell["text"])
            assert (shown is None) == (expected is None), (where, cell)
            if expected is not None:
                assert shown == pytest.approx(expected, abs=0.005), (where, cell)
    # The chart: one series per group of the top-list, one point per bucket of `every`.
    every_ms = int(params["every"][:-1]) * {"m": M, "h": H}[params["every"][-1]]
    points = math.ceil((step["to_ms"] - step["from_ms"]) / every_ms)
    chart = step["chart"]
    assert chart["canvas"], where
    assert chart["series_attr"] == len(chart["labels"]) == len(answer["groups"]), where
    assert chart["points_attr"] == len(chart["data"][0]) == len(answer["series"]) == points, where
    agg = answer["aggregations"][0]
    assert chart["data"][0] == [p["from_ms"] / 1000 for p in answer["series"]], where
    for g, group in enumerate(answer["groups"]):
        expected_line = [
            next((x["values"][agg] for x in p["groups"] if x["group"] == group["group"]), None)
            for p in answer["series"]
        ]
        assert chart["data"][g + 1] == expected_line, (where, group["group"])
    # The facets: each one's top five values over the range its answer covered.
    status, catalog = _get(f"{explorer.url}/api/v1/rollups")
    assert [f["facet"] for f in step["facets"]] == catalog["facets"], where
    for facet in step["facets"]:
        query = urllib.parse.urlencode({"from": facet["from_ms"], "to": facet["to_ms"], "top": 5})
        status, body = _get(f"{explorer.url}/api/v1/facets/{facet['facet']}?{query}")
        assert status == 200, body
        assert [(v["value"], v["count"]) for v in facet["values"]] == [
            (v["value"], v["count"]) for v in body["values"]
        ], (where, facet["facet"])
        assert all(_shown(v["text"]) == v["count"] for v in facet["values"]), (where, facet)
    return answer


def test_page_numbers_and_chart_equal_the_query_api(explorer: Site) -> None:
    steps = [
        {"name": "default"},
        # Keyboard only: from the rollup, Tab to the range (1d -> 4h), the aggregation
        # (count -> sum -> avg) and the groups (top 10 -> top 5).
        {
            "name": "keyboard",
            "keys": ["#rollup", "Tab", "ArrowUp", "Tab", "ArrowDown", "ArrowDown", "Tab", "ArrowUp"],
        },
        {"name": "names-7d", "select": {"rollup": "actions_by_name", "range": "7d", "top": "20"}},
        {"name": "p95-15m", "select": {"rollup": "cart_value_by_country", "range": "15m", "agg": "p95"}},
        {"name": "filtered-2d", "select": {"range": "2d", "agg": "sum", "where": "-geo.country:France"}},
    ]
    report = drive(explorer, steps)
    check_clean(report, explorer)
    by_name = {s["name"]: s for s in report["steps"]}
    assert by_name["default"]["controls"] == {
        "rollup": "cart_value_by_country", "range": "1d", "agg": "count", "top": "10", "where": "",
    }  # fmt: skip
    assert by_name["keyboard"]["controls"] == {
        "rollup": "cart_value_by_country", "range": "4h", "agg": "avg", "top": "5", "where": "",
    }  # fmt: skip
    assert by_name["names-7d"]["controls"]["agg"] == "count"  # avg is not kept by actions_by_name
    answers = {name: _check_step(explorer, step) for name, step in by_name.items()}
    # The data shows in every view: several groups, lines with points.
    for name in ("default", "keyboard", "names-7d"):
        assert len(answers[name]["groups"]) >= 2, name
        assert sum(v is not None for line in by_name[name]["chart"]["data"][1:] for v in line) > 2, name
    assert "France" not in {g["group"]["geo.country"] for g in answers["filtered-2d"]["groups"]}
    # Live: each step was checked after a refresh of its own; the time shown moved with them.
    assert all(s["refreshes"] >= 2 and re.fullmatch(r"\d\d:\d\d:\d\d", s["updated"]) for s in report["steps"])
    for step in report["steps"]:
        assert Path(step["screenshot"]).stat().st_size > 10_000
    status, catalog = _get(f"{explorer.url}/api/v1/rollups")
    assert status == 200
    expected_monitors = "ok" if catalog["monitors"] else "none"
    assert {s["monitors_state"] for s in report["steps"]} == {expected_monitors}
    if os.environ.get("RUM_UPDATE_SCREENSHOT"):
        target = ROOT / "docs" / "images" / "explorer.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(by_name["keyboard"]["screenshot"], target)


def test_a_monitor_turns_alert_on_the_page(explorer: Site) -> None:
    status, _ = _get(f"{explorer.url}/api/v1/monitors")
    if status == 404:
        pytest.skip("this serve has no GET /api/v1/monitors (the monitor runtime is not part of this build)")
    # A burst of 60 actions named explorer-burst in the last minute: more than the 20 in 5 minutes allowed.
    now = int(time.time() * 1000)
    burst = []
    for message in TrafficGenerator(seed=12, start_ms=now - 50_000, span_ms=40_000).messages(60):
        event = orjson.loads(message.value)
        event.setdefault("action", {}).setdefault("target", {})["name"] = "explorer-burst"
        burst.append(Message(message.key, orjson.dumps(event)))
    produce_messages(explorer.env, burst)
    report = drive(explorer, [], "--wait-monitor", f"{BURST_MONITOR['name']}=ALERT", "--timeout", "120000")
    check_clean(report, explorer)
    shown = {m["name"]: m["status"] for m in report["monitor"]["monitors"]}
    assert shown[BURST_MONITOR["name"]] == "ALERT", shown
    status, body = _get(f"{explorer.url}/api/v1/monitors")
    assert status == 200
    assert {m["name"] for m in body["monitors"]} == set(shown)
    events = report["monitor"]["events"]
    assert any(e["monitor"] == BURST_MONITOR["name"] and e["to"] == "ALERT" for e in events), events
