"""The topic table: unique names, the prefix, and the configs each topic is created with.

That `rum-pipeline topics create` makes them so on a broker is tested in
tests/integration/test_topics.py.
"""

from __future__ import annotations

import pipeline.topics as topics
from pipeline.settings import load_settings
from pipeline.topics import (
    BAD,
    BAD_MAX_MESSAGE_BYTES,
    ENRICHED,
    ENRICHED_MAX_MESSAGE_BYTES,
    LARGE_MESSAGE_BYTES,
    LATE,
    OTHER,
    RAW,
    TOPICS,
    TopicSpec,
    topic_specs,
)

SPECS = {spec.name: spec for spec in TOPICS}


def test_every_topic_name_of_the_module_is_in_the_table_once() -> None:
    names = {
        value
        for name, value in vars(topics).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }
    assert sorted(spec.name for spec in TOPICS) == sorted(names)
    assert all(name.startswith("rum.") for name in names)


def test_the_prefix_goes_before_every_name() -> None:
    settings = load_settings({"RUM_TOPIC_PREFIX": "staging."})
    named = topic_specs(settings)
    assert [spec for _, spec in named] == list(TOPICS)
    assert [full for full, _ in named] == [f"staging.{spec.name}" for spec in TOPICS]


def test_no_prefix_by_default() -> None:
    assert [full for full, _ in topic_specs(load_settings({}))] == [spec.name for spec in TOPICS]


def test_compaction_is_a_topic_config_and_the_spec_is_left_unchanged() -> None:
    spec = TopicSpec("x", "a compacted topic", compacted=True, configs={"segment.ms": "1000"})
    assert spec.kafka_configs() == {"segment.ms": "1000", "cleanup.policy": "compact"}
    assert spec.configs == {"segment.ms": "1000"}
    assert TopicSpec("y", "a log").kafka_configs() == {}


def test_upsert_and_internal_topics_are_compacted_and_event_logs_are_not() -> None:
    compacted = {spec.name for spec in TOPICS if spec.compacted}
    assert {topics.FACETS, topics.ROLLUPS, topics.MONITOR_STATE} <= compacted
    assert all(name in compacted for name in SPECS if name.startswith("rum.internal."))
    assert not compacted & {RAW, ENRICHED, BAD, LATE, OTHER, topics.MONITOR_EVENTS}


def test_topics_that_carry_whole_actions_take_large_messages() -> None:
    # A raw action over the size limit must reach the worker to become a bad row of kind "size".
    assert SPECS[RAW].kafka_configs()["max.message.bytes"] == str(LARGE_MESSAGE_BYTES)
    assert SPECS[BAD].kafka_configs()["max.message.bytes"] == str(BAD_MAX_MESSAGE_BYTES)
    assert SPECS[OTHER].kafka_configs()["max.message.bytes"] == str(LARGE_MESSAGE_BYTES)
    for name in (ENRICHED, LATE):
        assert SPECS[name].kafka_configs()["max.message.bytes"] == str(ENRICHED_MAX_MESSAGE_BYTES)
    assert LARGE_MESSAGE_BYTES > 1024 * 1024  # above Kafka's default, or the setting would be pointless


def test_every_topic_says_what_it_holds() -> None:
    assert all(spec.description for spec in TOPICS)
