"""Exactly once on the real broker: transactions per raw partition, fencing of a paused worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.consume import assign_topics, make_reader
from pipeline.settings import Settings
from pipeline.topics import ENRICHED
from tests.chaos_helpers import coverage, produce, start_worker
from tests.kafka_helpers import CLI, isolated_env, settings_from

pytestmark = pytest.mark.kafka


async def _count(settings: Settings, topic: str, isolation: str) -> int:
    consumer = make_reader(settings, isolation)
    await consumer.start()
    try:
        await assign_topics(consumer, [topic])
        ends = await consumer.end_offsets(list(consumer.assignment()))
        count = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and [t for t, e in ends.items() if await consumer.position(t) < e]:
            batch = await consumer.getmany(timeout_ms=500, max_records=20000)
            count += sum(len(records) for records in batch.values())
        return count
    finally:
        await consumer.stop()


def count(settings: Settings, topic: str, isolation: str = "read_committed") -> int:
    """Records of ``topic`` a reader with ``isolation`` sees now."""
    return asyncio.run(_count(settings, topic, isolation))


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_paused_worker_is_fenced_and_its_output_never_seen(tmp_path: Path) -> None:
    """A worker paused past its session timeout with uncommitted output commits nothing after it resumes.

    The first worker holds its output for a long commit interval, so its
    enriched actions sit in an open transaction when it is stopped (SIGSTOP).
    A second worker takes the partitions over, which fences the first one and
    aborts that transaction, and enriches the same actions again. Once the
    first one resumes, it says so in one line and goes on, and a read-committed
    reader sees every action exactly once.
    """
    env = isolated_env(tmp_path, RUM_SESSION_TIMEOUT="6", RUM_PARTITIONS="3", RUM_ROLLUPS="false")
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    settings = settings_from(env)
    enriched = settings.topic(ENRICHED)
    slow = {**env, "RUM_FLUSH_INTERVAL": "45", "RUM_DATA_DIR": str(tmp_path / "a")}
    first = start_worker(slow, tmp_path / "a.log")
    second = None
    try:
        sent = produce(env, 300, seed=3)
        # Enriched and written, but not committed: visible to read_uncommitted only.
        uncommitted = lambda: count(settings, enriched, "read_uncommitted")  # noqa: E731
        wait_for(lambda: uncommitted() >= 290, 90, "the first worker's output")
        assert count(settings, enriched) == 0
        os.kill(first.pid, signal.SIGSTOP)
        second = start_worker({**env, "RUM_DATA_DIR": str(tmp_path / "b")}, tmp_path / "b.log")
        wait_for(lambda: count(settings, enriched) >= 290, 120, "the second worker's committed output")
        os.kill(first.pid, signal.SIGCONT)
        log = tmp_path / "a.log"
        fenced = "were taken over by another worker"
        wait_for(lambda: fenced in log.read_text(errors="replace"), 90, "the fenced line")
        time.sleep(5)
        text = log.read_text(errors="replace")
        assert first.poll() is None, text[-3000:]
        assert text.count(fenced) == 1, text[-3000:]
        assert "Future exception was never retrieved" not in text
        found = coverage(settings)
        assert not found.problems(), found.problems()
        assert found.enriched + found.bad == found.raw == len(sent)
        # The aborted copies are on the topic, but no committed reader ever gets them.
        assert uncommitted() > found.enriched
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
