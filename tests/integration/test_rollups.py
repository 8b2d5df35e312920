"""Facets and rollups on the real broker, equal to ground truth, through crashes and rebalances."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from pipeline.topics import BAD, RAW
from tests.chaos_helpers import (
    background_producer,
    check_rollups,
    committed_offsets,
    coverage,
    enriched_by_source,
    produce,
    read_all,
    start_worker,
    wait_until_processing,
)
from tests.kafka_helpers import CLI, isolated_env, run_worker, settings_from

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("in_memory", ["0", "300"])
def test_rollups_and_facets_equal_ground_truth(tmp_path: Path, test_mmdb: Path, in_memory: str) -> None:
    """One worker; with 300, most of its state lives in the RocksDB spill database."""
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_STATE_IN_MEMORY=in_memory)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    payloads = produce(env, 5000, seed=21)
    with run_worker(env, tmp_path / "worker.log") as worker:
        try:
            check_rollups(env, payloads, timeout=120)
        finally:
            assert worker.process.poll() is None, worker.tail()
    spilled = "rollup state spills to" in (tmp_path / "worker.log").read_text()
    assert spilled == (in_memory == "300")


CRASH_ACTIONS = int(os.environ.get("RUM_TEST_CRASH_ACTIONS", "60000"))


def test_kill_9_three_times_stays_exact(tmp_path: Path, test_mmdb: Path) -> None:
    """2 workers, 12 partitions; one is killed with SIGKILL 3 times while it processes, and restarted."""
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_SESSION_TIMEOUT="8")
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    rng = random.Random(5)
    envs = [{**env, "RUM_DATA_DIR": str(tmp_path / f"w{i}")} for i in range(2)]
    # The killed worker keeps little state in memory: the rest is in its spill database,
    # which a SIGKILL leaves behind for the next start to remove.
    envs[1]["RUM_STATE_IN_MEMORY"] = "300"
    with run_worker(envs[0], tmp_path / "w0.log") as steady:
        victim = start_worker(envs[1], tmp_path / "w1-0.log")
        producer, produced = background_producer(env, CRASH_ACTIONS, 33, rate=2000)
        try:
            for kill in range(3):
                wait_until_processing(tmp_path / f"w1-{kill}.log")
                time.sleep(rng.uniform(0.5, 4))
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                victim = start_worker(envs[1], tmp_path / f"w1-{kill + 1}.log")
            producer.join(300)
            assert produced, "the producer did not finish"
            check_rollups(env, produced[0], timeout=300)
            # Exactly once: read committed, no raw record was enriched, rejected or found late twice.
            found = coverage(settings_from(env))
            assert not found.problems(), found.problems()
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
        producer, produced = background_producer(env, CRASH_ACTIONS // 2, 44, rate=2000)
        wait_until_processing(tmp_path / "w0.log")
        time.sleep(2)
        with run_worker(envs[1], tmp_path / "w1.log"):
            wait_until_processing(tmp_path / "w1.log")
            time.sleep(3)
        # The first worker let go of the state of the partitions the second one took.
        assert "released: owned by another worker now" in (tmp_path / "w0.log").read_text(), first.tail()
        producer.join(300)
        assert produced, "the producer did not finish"
        check_rollups(env, produced[0], timeout=300)
        found = coverage(settings_from(env))
        assert not found.problems(), found.problems()
        assert first.process.poll() is None, first.tail()


def test_sigterm_mid_stream_flushes_commits_and_stops(tmp_path: Path, test_mmdb: Path) -> None:
    """A worker stopped while actions wait for their rollup flush flushes them and commits, then exits.

    Its successor then reads nothing twice (no action enriched twice), and the
    rollups stay exact.
    """
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb))
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    settings = settings_from(env)
    producer, produced = background_producer(env, 20_000, 55, rate=2500)
    with run_worker(env, tmp_path / "first.log") as first:
        wait_until_processing(tmp_path / "first.log", proc=first.process)
        time.sleep(2)
        first.process.send_signal(signal.SIGTERM)
        try:
            code = first.process.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not stop within 60 s of SIGTERM:\n{first.tail()}") from None
        assert code == 0, first.tail()
    # Everything the stopped worker wrote is covered by its committed offsets.
    committed = committed_offsets(settings, settings.topic(RAW))
    written: dict[int, int] = {}
    for partition, offset in enriched_by_source(settings):
        written[partition] = max(written.get(partition, -1), offset)
    for record in read_all(settings, settings.topic(BAD)):
        source = orjson.loads(record.value)["source"]
        written[source["partition"]] = max(written.get(source["partition"], -1), source["offset"])
    assert written, "the worker enriched nothing before it was stopped"
    assert {p: committed.get(p) for p in written} == {p: o + 1 for p, o in written.items()}
    with run_worker(env, tmp_path / "second.log") as second:
        producer.join(120)
        assert produced, "the producer did not finish"
        check_rollups(env, produced[0], timeout=180)
        found = coverage(settings)
        assert not found.problems(), found.problems()
        assert found.duplicates == 0
        assert second.process.poll() is None, second.tail()
