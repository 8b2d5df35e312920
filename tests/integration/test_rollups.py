"""Facets and rollups on the real broker, equal to ground truth, through crashes and rebalances."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, publish
from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.schemas import FACET_INDEX, MEASURE_ROLLUP, validate_record
from pipeline.topics import FACETS, RAW, ROLLUPS
from tests.kafka_helpers import CLI, isolated_env, run_worker, settings_from
from tests.rollup_truth import (
    facet_mismatches,
    ground_truth,
    latest_records,
    mismatches,
    rollup_table,
    wait_for,
)

pytestmark = pytest.mark.kafka
CONFIG = load_rollup_config(default_config_path())


def _produce(env: dict[str, str], count: int, seed: int, rate: float = 0.0) -> list[bytes]:
    """Publish generated actions (dated over the last hour) and return their exact bytes."""
    settings = settings_from(env)
    start = int(time.time() * 1000) - 3_600_000
    generated = list(TrafficGenerator(seed=seed, start_ms=start, malformed_share=0.005).messages(count))
    summary = asyncio.run(
        publish(
            settings, settings.topic(RAW), (Message(m.key, m.value, m.malformed) for m in generated), rate
        )
    )
    assert summary.failed == 0
    return [m.value for m in generated]


def _check(env: dict[str, str], payloads: list[bytes], timeout: float) -> None:
    settings = settings_from(env)
    truth = ground_truth(CONFIG, settings, payloads)

    def problems() -> list[str]:
        table = rollup_table(latest_records(settings, settings.topic(ROLLUPS)))
        return mismatches(truth, table) + facet_mismatches(
            truth, latest_records(settings, settings.topic(FACETS))
        )

    found = wait_for(problems, timeout)
    assert not found, "\n".join(found[:20])
    for record in latest_records(settings, settings.topic(ROLLUPS)).values():
        assert validate_record(MEASURE_ROLLUP, record) == []
    for record in latest_records(settings, settings.topic(FACETS)).values():
        assert validate_record(FACET_INDEX, record) == []


def test_rollups_and_facets_equal_ground_truth(tmp_path: Path, test_mmdb: Path) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb))
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    payloads = _produce(env, 5000, seed=21)
    with run_worker(env, tmp_path / "worker.log") as worker:
        try:
            _check(env, payloads, timeout=120)
        finally:
            assert worker.process.poll() is None, worker.tail()


CRASH_ACTIONS = int(os.environ.get("RUM_TEST_CRASH_ACTIONS", "60000"))


def _wait_until_processing(log: Path, timeout: float = 60) -> None:
    """Wait until a worker has restored the state of a raw partition it was given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "rollup state of partition" in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(
        f"the worker never started processing; log:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([CLI, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


def _background_producer(
    env: dict[str, str], count: int, seed: int, rate: float
) -> tuple[threading.Thread, list]:
    produced: list[list[bytes]] = []
    thread = threading.Thread(target=lambda: produced.append(_produce(env, count, seed, rate=rate)))
    thread.start()
    return thread, produced


def test_kill_9_three_times_stays_exact(tmp_path: Path, test_mmdb: Path) -> None:
    """2 workers, 12 partitions; one is killed with SIGKILL 3 times while it processes, and restarted."""
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_SESSION_TIMEOUT="8")
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    rng = random.Random(5)
    envs = [{**env, "RUM_DATA_DIR": str(tmp_path / f"w{i}")} for i in range(2)]
    with run_worker(envs[0], tmp_path / "w0.log") as steady:
        victim = _start(envs[1], tmp_path / "w1-0.log")
        producer, produced = _background_producer(env, CRASH_ACTIONS, 33, rate=2000)
        try:
            for kill in range(3):
                _wait_until_processing(tmp_path / f"w1-{kill}.log")
                time.sleep(rng.uniform(0.5, 4))
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                victim = _start(envs[1], tmp_path / f"w1-{kill + 1}.log")
            producer.join(300)
            assert produced, "the producer did not finish"
            _check(env, produced[0], timeout=300)
            assert steady.process.poll() is None, steady.tail()
        finally:
            victim.kill()
            victim.wait()


def test_adding_and_removing_a_worker_stays_exact(tmp_path: Path, test_mmdb: Path) -> None:
    """A second worker joins mid-stream, then leaves: two rebalances while traffic flows."""
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_SESSION_TIMEOUT="8")
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    envs = [{**env, "RUM_DATA_DIR": str(tmp_path / f"w{i}")} for i in range(2)]
    with run_worker(envs[0], tmp_path / "w0.log") as first:
        producer, produced = _background_producer(env, CRASH_ACTIONS // 2, 44, rate=2000)
        _wait_until_processing(tmp_path / "w0.log")
        time.sleep(2)
        with run_worker(envs[1], tmp_path / "w1.log"):
            _wait_until_processing(tmp_path / "w1.log")
            time.sleep(3)
        producer.join(300)
        assert produced, "the producer did not finish"
        _check(env, produced[0], timeout=300)
        assert first.process.poll() is None, first.tail()
