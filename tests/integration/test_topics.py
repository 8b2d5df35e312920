"""`rum-pipeline topics create` on the real broker: every topic, right configs, idempotent."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.topics import TOPICS
from tests.kafka_helpers import CLI, isolated_env, settings_from

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
