"""raw -> enriched | bad on the real broker: exactly one output per input, nothing lost."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest

from pipeline.badrows import original_payload
from pipeline.generate import exact_malformed
from pipeline.produce import Message, publish
from pipeline.schemas import validate_record
from pipeline.topics import BAD, ENRICHED, RAW
from tests.kafka_helpers import CLI, consume, isolated_env, run_worker, settings_from

pytestmark = pytest.mark.kafka

TOTAL, MALFORMED = 10_000, 100


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_ten_thousand_actions_one_output_each(tmp_path: Path, test_mmdb: Path, guarantee: str) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_PROCESSING_GUARANTEE=guarantee)
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    generated = exact_malformed(TOTAL, MALFORMED, seed=11, allow_huge=True)
    kinds = Counter(m.malformed for m in generated if m.malformed)
    assert sum(kinds.values()) == MALFORMED and set(kinds) == {"parse", "schema", "size"}
    summary = asyncio.run(
        publish(settings, settings.topic(RAW), (Message(m.key, m.value, m.malformed) for m in generated))
    )
    assert summary.sent == TOTAL and summary.failed == 0

    with run_worker(env, tmp_path / "worker.log") as worker:
        enriched = consume(settings, settings.topic(ENRICHED), TOTAL - MALFORMED, timeout=180)
        bad = consume(settings, settings.topic(BAD), MALFORMED, timeout=60)
        assert worker.process.poll() is None, worker.tail()
    assert len(enriched) == TOTAL - MALFORMED
    assert len(bad) == MALFORMED

    good_values = Counter(m.value for m in generated if not m.malformed)
    seen = Counter()
    for record in enriched:
        event = orjson.loads(record.value)
        assert validate_record("enriched-action.v1", event) == []
        # Same partitioning as the raw topic, and the source is traceable.
        assert event["pipeline"]["source"]["partition"] == record.partition
        seen[event["action"]["id"]] += 1
    assert all(count == 1 for count in seen.values())
    assert len(seen) == sum(good_values.values())

    bad_payloads = Counter()
    bad_kinds = Counter()
    for record in bad:
        row = orjson.loads(record.value)
        assert validate_record("bad-row.v1", row) == []
        bad_payloads[original_payload(row)] += 1
        bad_kinds[row["kind"]] += 1
    # Every bad row carries the exact bytes produced, and its kind is the fault injected.
    assert bad_payloads == Counter(m.value for m in generated if m.malformed)
    assert bad_kinds == kinds
