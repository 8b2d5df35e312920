"""Kafka administration on the real broker: reachability errors, topic creation, partition leaders."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from pipeline.admin import check_reachable, create_topics, wait_for_leaders
from pipeline.errors import KafkaUnavailableError, PipelineError
from pipeline.settings import load_settings
from pipeline.topics import RAW, TOPICS
from tests.kafka_helpers import isolated_env, settings_from


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_cluster_is_named_with_what_to_do() -> None:
    port = _closed_port()
    settings = load_settings({"RUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"})
    with pytest.raises(KafkaUnavailableError) as raised:
        asyncio.run(check_reachable(settings, timeout=2))
    message = str(raised.value)
    assert message.startswith(f"cannot reach Kafka at 127.0.0.1:{port} within 2 s (")
    assert message.endswith("start one with 'make broker' or set RUM_KAFKA_BOOTSTRAP")


@pytest.mark.kafka
def test_create_topics_creates_what_is_missing_and_notes_a_partition_mismatch(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, RUM_PARTITIONS="2")
    first = asyncio.run(create_topics(settings_from(env)))
    assert [(r.name, r.partitions, r.created, r.note) for r in first] == [
        (settings_from(env).topic(spec.name), 2, True, "") for spec in TOPICS
    ]
    env["RUM_PARTITIONS"] = "3"
    settings = settings_from(env)
    again = asyncio.run(create_topics(settings))
    assert not any(r.created for r in again)
    assert {r.note for r in again} == {"has 2 partitions, settings say 3"}
    asyncio.run(wait_for_leaders(settings, [settings.topic(RAW)], timeout=5))


@pytest.mark.kafka
def test_waiting_for_leaders_of_a_missing_topic_names_it(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    missing = settings.topic("never-created")
    with pytest.raises(
        PipelineError, match=r"topics without partition leaders after 1 s: \['\S+never-created'\]"
    ):
        asyncio.run(wait_for_leaders(settings, [missing], timeout=1))
