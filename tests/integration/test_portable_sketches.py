"""Sketches read off the real rollup topic, merged with the plain ddsketch and datasketches packages."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import orjson
import pytest

from pipeline.generate import TrafficGenerator
from pipeline.produce import Message
from pipeline.topics import ROLLUPS
from tests.chaos_helpers import check_rollups, produce_messages, truth_of
from tests.kafka_helpers import CLI, isolated_env, run_worker, settings_from
from tests.rollup_truth import latest_records
from tests.rollups.test_portable import QS, project_merge, run_recipe

pytestmark = pytest.mark.kafka


def test_published_sketches_merge_with_the_plain_packages(tmp_path: Path, test_mmdb: Path) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb))
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    # Over two whole past hours, so that the hour windows hold the same actions whatever the clock says.
    hour = 3_600_000
    now = int(time.time() * 1000)
    gen = TrafficGenerator(
        seed=12, start_ms=now - now % hour - 3 * hour, span_ms=2 * hour - 60_000, malformed_share=0.005
    )
    payloads = produce_messages(env, [Message(m.key, m.value, m.malformed) for m in gen.messages(4000)])
    with run_worker(env, tmp_path / "worker.log") as worker:
        check_rollups(env, payloads, timeout=120)  # every record is there, and exact
        assert worker.process.poll() is None, worker.tail()
    # Stopped (SIGTERM) with its rollup state in memory: no sketch outlived the extension module.
    assert worker.process.returncode == 0, worker.tail()
    assert "leaked" not in worker.log.read_text(errors="replace"), worker.tail()
    records = latest_records(settings, settings.topic(ROLLUPS))
    truth = truth_of(settings, payloads)
    hours = sorted(
        (r for r in records.values() if r["rollup"] == "cart_value_by_country" and r["interval"] == "1h"),
        key=lambda r: -r["sketches"]["ddsketch"]["count"],
    )
    assert len(hours) >= 2 and hours[1]["sketches"]["ddsketch"]["count"] >= 20
    for picked in (hours[:2], hours):  # two groups' windows, then every group and window
        raw = [orjson.dumps(record) for record in picked]
        quantiles, users = run_recipe(raw, QS)
        assert (quantiles, users) == project_merge(raw)
        keys = [(r["rollup"], r["interval"], r["window_start"], tuple(r["group"].values())) for r in picked]
        values = sorted(v for key in keys for v in truth.values[key])
        for q, estimate in zip(QS, quantiles, strict=True):
            exact = values[int(q * (len(values) - 1))]
            assert estimate is not None
            assert abs(estimate - exact) <= 0.01 * abs(exact) * (1 + 1e-9), (q, estimate, exact)
        distinct = len(set().union(*(truth.users[key] for key in keys)))
        assert abs(users - distinct) <= 3 * 0.016 * distinct + 1, (users, distinct)
