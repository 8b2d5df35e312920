"""Queries on the real broker against ground truth computed from the produced actions.

One worker, killed with SIGKILL once while it processes and restarted, turns
30 hours of generated traffic into rollups; then a rolling 24 h starting at an
arbitrary minute, a series of 1 h points and a range holding late actions are
asked through the library's Kafka reader, the CLI and the HTTP API.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.generate import TrafficGenerator
from pipeline.produce import Message
from pipeline.rollups.sketches import CardinalitySketch
from pipeline.view.catalog import load_catalog
from pipeline.view.query import run_query
from pipeline.view.reader import load_view
from pipeline.view.request import Limits, parse_query
from pipeline.view.store import ViewStore
from tests.chaos_helpers import produce_messages, start_worker, wait_until_processing
from tests.kafka_helpers import CLI, isolated_env, run_worker, settings_from
from tests.rollup_truth import Truth

pytestmark = pytest.mark.kafka

M, H, D = 60_000, 3_600_000, 86_400_000
ROLLUP = "cart_value_by_country"


def messages(seed: int, start: int, span: int, count: int) -> list[Message]:
    gen = TrafficGenerator(seed=seed, start_ms=start, span_ms=span, malformed_share=0.005)
    return [Message(m.key, m.value, m.malformed) for m in gen.messages(count)]


def range_truth(truth: Truth, start: int, end: int) -> dict[str, dict[str, Any]]:
    """Per country, from the 1m windows of the truth inside [start, end)."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "values": [], "users": set()})
    for key, count in truth.counts.items():
        rollup, interval, window, group = key
        if rollup == ROLLUP and interval == "1m" and start <= window < end:
            row = out[group[0]]
            row["count"] += count
            row["values"] += truth.values.get(key, [])
            row["users"] |= truth.users.get(key, set())
    return dict(out)


def check(values: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    nums = sorted(expected["values"])
    assert values["count"] == expected["count"], where
    if not nums:
        return
    assert values["sum"] == pytest.approx(math.fsum(nums), rel=1e-12, abs=1e-9), where
    assert values["avg"] == pytest.approx(math.fsum(nums) / len(nums), rel=1e-9), where
    assert (values["min"], values["max"]) == (nums[0], nums[-1]), where
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        rank = q * (len(nums) - 1)
        near = {nums[math.floor(rank)], nums[math.ceil(rank)]}
        assert any(abs(values[name] - v) <= 0.01 * abs(v) + 1e-9 for v in near), (where, name)
    exact = len(expected["users"])
    sigma = CardinalitySketch().relative_error(1) * exact
    assert abs(values["cardinality(usr.id)"] - exact) <= 3 * sigma + 1, where


def wait_for_counts(settings: Any, total: int, start: int, end: int, timeout: float) -> ViewStore:
    """A view read (read_committed) once the range holds ``total`` checkouts; fails after ``timeout``."""
    catalog = load_catalog(settings)
    deadline = time.monotonic() + timeout
    while True:
        store = ViewStore()
        progress = asyncio.run(load_view(settings, store, timeout=60))
        assert progress.caught_up
        query = parse_query(
            {"rollup": ROLLUP, "from": str(start), "to": str(end), "agg": "count"},
            [],
            catalog.rollups,
            int(time.time() * 1000),
            Limits(),
        )
        got = sum(g["values"]["count"] for g in run_query(store, query, Limits())["groups"])
        if got == total or time.monotonic() > deadline:
            assert got == total, f"{got} checkouts in the view, {total} produced"
            return store
        time.sleep(2)


def test_queries_equal_ground_truth_across_a_crash(tmp_path: Path, test_mmdb: Path) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb))
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    settings = settings_from(env)
    now = int(time.time() * 1000)
    first = now - 30 * H
    payloads = produce_messages(env, messages(7, first, 30 * H - 10 * M, 12_000))
    from tests.chaos_helpers import truth_of

    truth = truth_of(settings, payloads)
    victim = start_worker(env, tmp_path / "w0.log")
    try:
        wait_until_processing(tmp_path / "w0.log", proc=victim)
        time.sleep(1.5)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
    with run_worker(env, tmp_path / "w1.log") as worker:
        # A rolling 24 h from an arbitrary minute: 1h windows and 1m windows at both edges.
        # Hour-aligned plus 17 minutes, so it never falls on an hour edge whatever the clock says.
        start = first - first % H + 4 * H + 17 * M
        end = start + D
        expected = range_truth(truth, start, end)
        total = sum(row["count"] for row in expected.values())
        store = wait_for_counts(settings, total, start, end, timeout=180)
        catalog = load_catalog(settings)
        now_ms = int(time.time() * 1000)
        query = parse_query(
            {"rollup": ROLLUP, "from": str(start), "to": str(end)}, [], catalog.rollups, now_ms, Limits()
        )
        answer = run_query(store, query, Limits())
        assert set(answer["windows"]) <= {"1d", "1h", "1m"} and answer["windows"].get("1m", 0) > 0
        assert answer["late"] == 0 and not answer["approximations"]
        got = {g["group"]["geo.country"]: g["values"] for g in answer["groups"]}
        assert set(got) == set(expected)
        for country, row in expected.items():
            check(got[country], row, f"rolling 24 h, {country}")

        # A series of 1 h points, for one country, through the CLI.
        country = max(expected, key=lambda c: expected[c]["count"] if c else -1)
        hour = start - start % H + H
        cli = subprocess.run(
            [CLI, "query", ROLLUP, "--from", str(hour), "--to", str(hour + 6 * H), "--every", "1h",
             "--where", f'geo.country:"{country}"', "--json"],
            env=env, capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        series = orjson.loads(cli.stdout)["series"]
        assert len(series) == 6
        for point in series:
            row = range_truth(truth, point["from_ms"], point["to_ms"]).get(country)
            values = point["groups"][0]["values"] if point["groups"] else {"count": 0}
            assert values["count"] == (row["count"] if row else 0)
            if row:
                check(values, row, f"series point {point['from']}")

        # The same six hours of a facet, through the CLI: counts summed over hour windows.
        cli = subprocess.run(
            [CLI, "facets", "geo.country", "--from", str(hour), "--to", str(hour + 6 * H),
             "--top", "500", "--json"],
            env=env, capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        facets = orjson.loads(cli.stdout)
        expected_facets: dict[Any, int] = defaultdict(int)
        for (facet, interval, window, value), count in truth.facets.items():
            if facet == "geo.country" and interval == "1h" and hour <= window < hour + 6 * H:
                expected_facets[value] += count
        assert {v["value"]: v["count"] for v in facets["values"]} == dict(expected_facets)
        assert facets["unique_values"] == len(expected_facets) and facets["windows"] == {"1h": 6}

        # Late actions: an hour of checkouts long closed, produced now.
        late_hour = now - now % H - 4 * H
        late_payloads = produce_messages(env, messages(8, late_hour + 10 * M, 20 * M, 300))
        late_truth = truth_of(settings, late_payloads)
        late = sum(c for k, c in late_truth.counts.items() if k[0] == ROLLUP and k[1] == "1h")
        assert late > 0
        deadline = time.monotonic() + 120
        while True:
            status, answer = api_query(
                env, tmp_path, {"rollup": ROLLUP, "from": str(late_hour), "to": str(late_hour + H)}
            )
            if answer.get("late") == late or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert status == 200 and answer["late"] == late, answer
        assert answer["windows"] == {"1h": 1}
        # The hour itself still equals the on-time truth: late actions are not in it.
        on_time = range_truth(truth, late_hour, late_hour + H)
        assert sum(g["values"]["count"] for g in answer["groups"]) == sum(
            r["count"] for r in on_time.values()
        )
        assert worker.process.poll() is None, worker.tail()


def api_query(env: dict[str, str], tmp: Path, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Start `rum-pipeline serve`, wait for /ready, ask /api/v1/query, stop it."""
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([CLI, "serve", "--port", "0"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and base is None:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("serve: listening on "):
                    base = line.split()[-1]
            time.sleep(0.1)
        assert base, log.read_text()
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5) as ready:
                    if ready.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        try:
            with urllib.request.urlopen(
                f"{base}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=30
            ) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
