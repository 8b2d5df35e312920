"""A real, independent Kafka client (kcat) in and out of a real worker."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import orjson
import pytest

from pipeline.schemas import validate_record
from pipeline.topics import ENRICHED, RAW
from tests.factory import DATE, encoded, raw_action
from tests.kafka_helpers import (
    BOOTSTRAP,
    CLI,
    WorkerProcess,
    isolated_env,
    kcat,
    kcat_lines,
    run_worker,
    settings_from,
)

pytestmark = pytest.mark.kafka


CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


def _action(i: int) -> bytes:
    """Action ``i`` of 37 sessions, each distinct (no action id: none is taken for a copy)."""
    return encoded(
        raw_action(
            date=DATE + i,
            session={"id": f"s-{i % 37}"},
            view={"url": f"https://shop.example/product/{i}?utm_source=news"},
            action={"type": "custom", "target": {"name": "checkout" if i % 2 else "add_to_cart"}},
            context={"value": i / 100, "items": ["tomato", "strawberries"]},
            http={"useragent": CHROME},
        )
    )


def _kcat_read(topic: str, expected: int, timeout: float, worker: WorkerProcess) -> list[bytes]:
    deadline = time.monotonic() + timeout
    lines: list[bytes] = []
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, f"the worker exited:\n{worker.tail()}"
        lines = kcat_lines(topic)
        if len(lines) >= expected:
            break
        time.sleep(1)
    return lines


def test_kcat_in_worker_kcat_out(tmp_path: Path, test_mmdb: Path) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb))
    settings = settings_from(env)
    source = tmp_path / "actions.jsonl"
    source.write_bytes(b"\n".join(_action(i) for i in range(1000)) + b"\n")
    subprocess.run([CLI, "topics", "create"], env=env, check=True, timeout=60)
    with run_worker(env, tmp_path / "worker.log") as worker:
        subprocess.run(
            [kcat(), "-P", "-b", BOOTSTRAP, "-t", settings.topic(RAW), "-l", str(source)],
            check=True,
            timeout=60,
        )
        lines = _kcat_read(settings.topic(ENRICHED), 1000, timeout=90, worker=worker)
        assert len(lines) == 1000, worker.tail()
    records = [orjson.loads(line) for line in lines]
    for record in records:
        assert validate_record("enriched-action.v1", record) == []
    assert {r["pipeline"]["source"]["topic"] for r in records} == {settings.topic(RAW)}
    assert sorted(r["date"] for r in records) == [1764340000000 + i for i in range(1000)]
    assert all(r["geo"]["country_iso_code"] == "GB" for r in records)
    assert all(r["browser"]["name"] == "Chrome" for r in records)
