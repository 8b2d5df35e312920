"""A client that retries: the same intake batch five times is enriched and counted once."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from pipeline.intake.child import running_intake
from pipeline.rollups.compiled import DUPLICATES
from pipeline.topics import ENRICHED, RAW, ROLLUPS
from tests.chaos_helpers import coverage, read_all, rollup_problems, truth_of
from tests.integration.test_intake import (  # noqa: F401  (intake_env is a fixture)
    APPLICATION,
    MakeEnv,
    intake_env,
    post,
    sdk_url,
)
from tests.kafka_helpers import run_worker, settings_from
from tests.rollup_truth import latest_records

pytestmark = pytest.mark.kafka

ACTIONS = 60
COPIES = 5


def checkout(n: int) -> bytes:
    return orjson.dumps(
        {
            "type": "action",
            "date": int(time.time() * 1000) - 60_000 + n,
            "application": {"id": APPLICATION},
            "session": {"id": f"s-{n % 7}"},
            "action": {"id": f"act-{n}", "type": "custom", "target": {"name": "checkout"}},
            "context": {"value": 10 + n / 4, "items": ["tomato"]},
        }
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "_total "):
                return float(line.split()[-1])
    raise AssertionError(f"{name} not in the worker's metrics")


def test_a_batch_posted_five_times_is_enriched_and_counted_once(
    tmp_path: Path,
    intake_env: MakeEnv,  # noqa: F811
) -> None:
    port = free_port()
    env = intake_env(RUM_METRICS_PORT=str(port))
    settings = settings_from(env)
    body = b"\n".join(checkout(n) for n in range(ACTIONS))
    with running_intake(env, tmp_path / "intake.log") as intake:
        for _ in range(COPIES):
            answer = post(sdk_url(intake.url), body, {"Content-Type": "text/plain;charset=UTF-8"})
            assert answer.status == 202, answer.body
    raw = read_all(settings, settings.topic(RAW))
    assert len(raw) == ACTIONS * COPIES
    first: dict[str, bytes] = {}
    for record in raw:
        first.setdefault(orjson.loads(record.value)["action"]["id"], record.value)
    with run_worker(env, tmp_path / "worker.log") as worker:
        deadline = time.monotonic() + 120
        enriched: list[dict] = []
        while time.monotonic() < deadline and len(enriched) < ACTIONS:
            time.sleep(1)
            enriched = [orjson.loads(r.value) for r in read_all(settings, settings.topic(ENRICHED))]
        ids = sorted(e["action"]["id"] for e in enriched)
        assert ids == sorted(first), worker.tail()
        problems = rollup_problems(settings, truth_of(settings, first.values()), timeout=120)
        assert not problems, problems[:10]
        assert metric(port, "rum_duplicate_actions") == ACTIONS * (COPIES - 1)
        # The copies are counted per window under their own rollup: every copy in some day.
        copies = [
            r
            for r in latest_records(settings, settings.topic(ROLLUPS)).values()
            if r["rollup"] == DUPLICATES and r["interval"] == "1d"
        ]
        assert sum(r["aggregations"]["count"] for r in copies) == ACTIONS * (COPIES - 1)
        # Every raw record was handled exactly once: a copy leaves no output of its own.
        found = coverage(settings)
        assert found.raw == ACTIONS * COPIES and found.enriched == ACTIONS and found.duplicates == 0
