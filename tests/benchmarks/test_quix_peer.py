"""The Quix Streams peer of bench/peers.py against the real broker: each output to its topic, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

pytest.importorskip("quixstreams")

from bench.quix_peer import GUARANTEES, build
from pipeline.admin import create_topics
from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, publish
from pipeline.schemas import validate_record
from pipeline.topics import BAD, ENRICHED, RAW
from tests.chaos_helpers import delete_topics
from tests.kafka_helpers import consume, isolated_env, settings_from

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_enriched_actions_and_bad_rows_reach_their_topics(tmp_path: Path, guarantee: str) -> None:
    settings = settings_from(isolated_env(tmp_path))
    generated = list(TrafficGenerator(seed=11, malformed_share=0.25).messages(40))
    bad_expected = sum(m.malformed is not None for m in generated)
    assert 0 < bad_expected < len(generated)
    try:
        asyncio.run(create_topics(settings))
        asyncio.run(publish(settings, settings.topic(RAW), [Message(m.key, m.value) for m in generated]))
        build(settings, guarantee, str(tmp_path / "quix")).run(count=len(generated), timeout=60)

        enriched = consume(settings, settings.topic(ENRICHED), len(generated) - bad_expected)
        bad = consume(settings, settings.topic(BAD), bad_expected)
        assert len(enriched) == len(generated) - bad_expected
        assert len(bad) == bad_expected
        sources = set()
        for record in enriched:
            event = orjson.loads(record.value)
            assert validate_record("enriched-action.v1", event) == []
            source = event["pipeline"]["source"]
            assert source["topic"] == settings.topic(RAW)
            sources.add((source["partition"], source["offset"]))
        for record in bad:
            row = orjson.loads(record.value)
            assert validate_record("bad-row.v1", row) == []
            sources.add((row["source"]["partition"], row["source"]["offset"]))
        # Every raw record gave exactly one output.
        assert len(sources) == len(generated)
    finally:
        delete_topics(settings)


def test_copies_of_an_action_are_dropped_like_the_worker_does(tmp_path: Path) -> None:
    """Every message published twice: each action is enriched once, each bad row written twice."""
    settings = settings_from(isolated_env(tmp_path))
    generated = list(TrafficGenerator(seed=12, malformed_share=0.25).messages(30))
    bad_expected = sum(m.malformed is not None for m in generated)
    messages = [Message(m.key, m.value) for m in generated]
    try:
        asyncio.run(create_topics(settings))
        asyncio.run(publish(settings, settings.topic(RAW), messages + messages))
        build(settings, "at-least-once", str(tmp_path / "quix")).run(count=2 * len(messages), timeout=60)

        bad = consume(settings, settings.topic(BAD), 2 * bad_expected)
        # One more than expected, to see a copy that got through (the run wrote all it will).
        enriched = consume(settings, settings.topic(ENRICHED), len(generated) - bad_expected + 1, 5)
        assert len(bad) == 2 * bad_expected  # rows without a valid action.id are never copies
        ids = [orjson.loads(r.value)["action"]["id"] for r in enriched]
        assert len(ids) == len(set(ids)) == len(generated) - bad_expected
    finally:
        delete_topics(settings)
