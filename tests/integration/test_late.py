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


def test_quiet_partitions_let_windows_become_final(tmp_path: Path, test_mmdb: Path) -> None:
    """Traffic stops: the watermark still moves on the wall clock, every window turns final."""
    config = tmp_path / "rollups.yaml"
    config.write_text(
        "rollups:\n"
        "  - {name: n, group_by: [action.target.name], aggregations: [count], intervals: [10s]}\n"
        "grace: 1s\nidle: 3s\n"
    )
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), RUM_ROLLUPS_CONFIG=str(config))
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    with run_worker(env, tmp_path / "worker.log") as worker:
        now = int(time.time() * 1000)
        # 240 actions over the last 20 s, on every partition (one session per action).
        dates = [now - 20_000 + i * 83 for i in range(240)]
        messages = [Message(f"s{i}".encode(), _checkout(date, i)) for i, date in enumerate(dates)]
        asyncio.run(publish(settings, settings.topic(RAW), messages))
        expected: dict[int, int] = {}
        for date in dates:
            expected[window_start(date, 10)] = expected.get(window_start(date, 10), 0) + 1

        def windows() -> dict[int, dict[str, object]]:
            return {
                r["window_start"]: r
                for r in latest_records(settings, settings.topic(ROLLUPS)).values()
                if r["rollup"] == "n"
            }

        def not_final() -> list[str]:
            rows = windows()
            return [
                f"window {start}: {rows.get(start)}"
                for start, count in expected.items()
                if start not in rows
                or not rows[start]["final"]
                or rows[start]["aggregations"]["count"] != count
            ]

        # Without the wall-clock advance the last window would stay open for good:
        # no action ever arrives to move any partition's watermark past it.
        assert wait_for(not_final, timeout=60, interval=1.0) == []
        # An action for a final window, arriving afterwards, is late: routed, not counted in it.
        first = min(expected)
        asyncio.run(publish(settings, settings.topic(RAW), [Message(b"s0", _checkout(first + 1, 999))]))
        routed = consume(settings, settings.topic(LATE), 1, timeout=60)
        assert orjson.loads(routed[0].value)["reasons"][0]["window_start"] == first
        assert windows()[first]["aggregations"]["count"] == expected[first]
        assert worker.process.poll() is None, worker.tail()
