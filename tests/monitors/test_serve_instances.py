"""`rum-pipeline serve` processes evaluating the monitors of a config on the real broker.

- killed with SIGKILL and started again, serve restores the states and repeats no event;
- two serve processes of one group each evaluate their own monitors, none twice; when one
  stops, the other takes its monitors over from the state topic and goes on without a repeat.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.monitors.records import monitor_partition
from tests.kafka_helpers import CLI, isolated_env, settings_from
from tests.monitors.live import create_topics, events_of, last_closed, moves, produce_values

pytestmark = pytest.mark.kafka

CONFIG = """
facets: [geo.country]
measures: [{path: context.value}]
rollups:
  - name: cart
    filter: "@action.target.name:checkout"
    measure: context.value
    group_by: [geo.country]
    aggregations: [count, sum, avg, min, max]
    intervals: [1m]
monitors:
"""
MONITOR = """
  - name: {name}
    query: {{rollup: cart, aggregation: avg}}
    window: 5m
    comparator: ">"
    thresholds: {{alert: 100}}
"""


def write_config(tmp: Path, names: list[str]) -> Path:
    path = tmp / "rollups.yaml"
    path.write_text(CONFIG + "".join(MONITOR.format(name=n) for n in names))
    return path


@dataclass
class Serve:
    """A serve process: its log and its port."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def owned(self) -> list[str] | None:
        """The monitors it says it evaluates, from its latest ownership line (None before any)."""
        found = re.findall(r"this instance evaluates (.*) \(state partitions", self.text())
        if not found:
            return None
        return [] if found[-1] == "none" else found[-1].split(", ")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            return response.read()

    def metric(self, name: str) -> float:
        for line in self.get("/metrics").decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")


def wait(check: Any, timeout: float, what: str, proc: Serve | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            tail = "\n".join(proc.text().splitlines()[-30:]) if proc else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.2)


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[Serve]:
    """A serve process evaluating every 0.5 s, for the duration of the block (SIGTERM at the end)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [CLI, "serve", "--port", "0", "--monitor-interval", "0.5", "--loglevel", "info"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Serve(proc, log)
    try:
        line = wait(
            lambda: re.search(r"listening on http://[\d.]+:(\d+)", running.text()), 60, "serve", running
        )
        running.port = int(line[1])
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def events(settings: Any) -> list[dict[str, Any]]:
    return asyncio.run(events_of(settings))


def test_serve_killed_and_started_again_repeats_no_event(tmp_path: Path) -> None:
    env = isolated_env(
        tmp_path, RUM_ROLLUPS_CONFIG=str(write_config(tmp_path, ["cart_high"])), RUM_SESSION_TIMEOUT="6"
    )
    create_topics(env)
    settings = settings_from(env)
    start = last_closed(60)
    asyncio.run(produce_values(settings, 60, start, {"France": 150.0, "Germany": 130.0}))
    with serve(env, tmp_path / "first.log") as first:
        wait(lambda: len(events(settings)) >= 2, 60, "two ALERT events", first)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    with serve(env, tmp_path / "second.log") as second:
        wait(lambda: second.owned() == ["cart_high"], 60, "the restarted serve to own the monitor", second)
        cycles = wait(lambda: second.metric("rum_monitor_cycles_total"), 30, "a first cycle", second)
        wait(lambda: second.metric("rum_monitor_cycles_total") >= cycles + 4, 30, "four more cycles", second)
        assert second.metric("rum_monitor_events_total") == 0  # the ALERTs were restored, not repeated
        body = orjson.loads(second.get("/api/v1/monitors"))
        (listed,) = body["monitors"]
        assert listed["status"] == "ALERT" and [g["status"] for g in listed["groups"]] == ["ALERT", "ALERT"]
        asyncio.run(produce_values(settings, 60, start, {"France": 50.0}))
        wait(lambda: second.metric("rum_monitor_events_total") == 1, 30, "France to recover", second)
    found = events(settings)
    assert moves(found, "cart_high", "France") == ["OK>ALERT", "ALERT>OK"]
    assert moves(found, "cart_high", "Germany") == ["OK>ALERT"]


def names_in_partitions(partitions: int) -> list[str]:
    """One monitor name for each state partition."""
    chosen: dict[int, str] = {}
    for index in range(1000):
        name = f"cart_high_{index}"
        chosen.setdefault(monitor_partition(name, partitions), name)
        if len(chosen) == partitions:
            return [chosen[p] for p in range(partitions)]
    raise AssertionError("no names found")


def test_two_serve_instances_evaluate_each_monitor_once_and_take_over(tmp_path: Path) -> None:
    names = names_in_partitions(2)
    config = write_config(tmp_path, names)
    env = isolated_env(tmp_path, RUM_ROLLUPS_CONFIG=str(config), RUM_PARTITIONS="2", RUM_SESSION_TIMEOUT="6")
    create_topics(env)
    settings = settings_from(env)
    with serve(env, tmp_path / "a.log") as a, serve(env, tmp_path / "b.log") as b:
        wait(lambda: len(a.owned() or []) == 1 and len(b.owned() or []) == 1, 60, "one monitor each", b)
        assert sorted((a.owned() or []) + (b.owned() or [])) == sorted(names)
        start = last_closed(60)
        asyncio.run(produce_values(settings, 60, start, {"France": 150.0}))
        wait(lambda: len(events(settings)) >= 2, 30, "both monitors to alert", a)
        cycles = a.metric("rum_monitor_cycles_total"), b.metric("rum_monitor_cycles_total")
        wait(lambda: a.metric("rum_monitor_cycles_total") >= cycles[0] + 4, 30, "more cycles of a", a)
        wait(lambda: b.metric("rum_monitor_cycles_total") >= cycles[1] + 4, 30, "more cycles of b", b)
        # Each wrote the ALERT of its own monitor, and only that.
        assert a.metric("rum_monitor_events_total") == 1 and b.metric("rum_monitor_events_total") == 1
        for name in names:
            assert moves(events(settings), name, "France") == ["OK>ALERT"], name
        body = orjson.loads(a.get("/api/v1/monitors"))  # every monitor, whoever evaluates it
        assert {m["name"]: m["status"] for m in body["monitors"]} == dict.fromkeys(names, "ALERT")

        a.process.send_signal(signal.SIGTERM)  # a leaves the group: b takes its monitor over
        a.process.wait(30)
        wait(lambda: sorted(b.owned() or []) == sorted(names), 60, "b to own both monitors", b)
        asyncio.run(produce_values(settings, 60, start, {"France": 50.0}))
        wait(lambda: b.metric("rum_monitor_events_total") == 3, 30, "both monitors to recover", b)
    found = events(settings)
    for name in names:
        assert moves(found, name, "France") == ["OK>ALERT", "ALERT>OK"], name
