"""`rum-pipeline topics create` on the real broker: every topic, right configs, idempotent."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.topics import BAD, ENRICHED, LATE, RAW, TOPICS
from tests.chaos_helpers import ASSIGNED, wait_until_processing
from tests.kafka_helpers import CLI, isolated_env, run_worker, settings_from

pytestmark = pytest.mark.kafka


async def _describe(bootstrap: list[str], names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        found: dict[str, tuple[int, dict[str, str]]] = {}
        by_name = {t["topic"]: len(t["partitions"]) for t in described}
        for response in configs:
            for _code, _msg, _type, name, entries in response.resources:
                found[name] = (by_name[name], {e[0]: e[1] for e in entries})
        return found
    finally:
        await admin.close()


def test_topics_create_is_idempotent(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, RUM_PARTITIONS="4")
    settings = settings_from(env)
    first = subprocess.run([CLI, "topics", "create"], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.count("created") == len(TOPICS)
    second = subprocess.run([CLI, "topics", "create"], env=env, capture_output=True, text=True, check=True)
    assert "created" not in second.stdout
    assert second.stdout.count("exists") == len(TOPICS)
    names = [settings.topic(spec.name) for spec in TOPICS]
    described = asyncio.run(_describe(settings.bootstrap_servers, names))
    for spec in TOPICS:
        partitions, configs = described[settings.topic(spec.name)]
        assert partitions == 4
        expected = "compact" if spec.compacted else "delete"
        assert configs["cleanup.policy"] == expected, spec.name
        if "max.message.bytes" in spec.configs:  # set on every topic carrying whole actions
            assert configs["max.message.bytes"] == spec.configs["max.message.bytes"], spec.name
    carrying_actions = {RAW, ENRICHED, LATE, BAD}
    assert all("max.message.bytes" in spec.configs for spec in TOPICS if spec.name in carrying_actions)


def test_produce_to_a_missing_topic_says_so_at_once(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)  # its topics were never created
    started = time.monotonic()
    done = subprocess.run(
        [CLI, "produce", "--generate", "10", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"topic {settings_from(env).topic(RAW)} does not exist" in done.stderr
    assert "rum-pipeline topics create" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30  # not aiokafka's 40 s metadata wait


def test_worker_creates_a_nested_data_directory(tmp_path: Path) -> None:
    nested = tmp_path / "not" / "yet" / "there"
    env = isolated_env(tmp_path, RUM_DATA_DIR=str(nested))
    with run_worker(env, tmp_path / "worker.log") as worker:
        wait_until_processing(worker.log, proc=worker.process, marker=ASSIGNED)
        assert worker.process.poll() is None, worker.tail()
    assert nested.is_dir()
