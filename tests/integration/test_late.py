"""Late and far-future actions on the real broker: counted and routed, never dropped."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from pipeline.produce import Message, publish
from pipeline.rollups.windows import window_start
from pipeline.schemas import LATE_ACTION, validate_record
from pipeline.topics import BAD, LATE, RAW, ROLLUPS
from tests.kafka_helpers import CLI, consume, isolated_env, run_worker, settings_from
from tests.rollup_truth import latest_records, wait_for

pytestmark = pytest.mark.kafka
HOUR = 3_600_000


def _checkout(date: int, n: int) -> bytes:
    return orjson.dumps(
        {
            "type": "action",
            "date": date,
            "session": {"id": "s-late"},
            "usr": {"id": f"u{n}"},
            "action": {"type": "custom", "target": {"name": "checkout"}},
            "context": {"value": 10.0 + n},
            "network": {"client": {"ip": "81.2.69.142"}},
        }
    )


def test_late_and_future_actions(tmp_path: Path, test_mmdb: Path) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb))
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    now = int(time.time() * 1000)
    on_time, late, future = now, now - 3 * HOUR, now + 25 * HOUR
    # One key, hence one partition: the on-time action moves its watermark first.
    messages = [
        Message(b"s-late", _checkout(on_time, 1)),
        Message(b"s-late", _checkout(late, 2)),
        Message(b"s-late", _checkout(future, 3)),
    ]
    for message in messages:  # one at a time, so that they are read in this order
        asyncio.run(publish(settings, settings.topic(RAW), [message]))
    with run_worker(env, tmp_path / "worker.log") as worker:
        routed = consume(settings, settings.topic(LATE), 1, timeout=90)
        bad = consume(settings, settings.topic(BAD), 1, timeout=30)
        late_key = ("cart_value_by_country:late", "1h", window_start(late, 3600))

        def problems() -> list[str]:
            rows = {
                (r["rollup"], r["interval"], r["window_start"]): r
                for r in latest_records(settings, settings.topic(ROLLUPS)).values()
            }
            if late_key not in rows:
                return [f"no {late_key} record"]
            if rows[late_key]["aggregations"]["count"] != 1:
                return [f"late count {rows[late_key]['aggregations']['count']}"]
            stray = rows.get(("cart_value_by_country", "1h", window_start(late, 3600)))
            return [f"the late action was counted in its closed window: {stray}"] if stray else []

        found = wait_for(problems, timeout=60)
        assert worker.process.poll() is None, worker.tail()
    assert not found, found
    assert len(routed) == 1
    record = orjson.loads(routed[0].value)
    assert validate_record(LATE_ACTION, record) == []
    assert record["action"]["date"] == late
    assert ("late", "cart_value_by_country", "1h", window_start(late, 3600)) in {
        (r["kind"], r["rollup"], r["interval"], r["window_start"]) for r in record["reasons"]
    }
    assert len(bad) == 1
    row = orjson.loads(bad[0].value)
    assert row["kind"] == "schema" and row["errors"][0]["path"] == "$.date"
