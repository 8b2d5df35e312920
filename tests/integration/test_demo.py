"""`make run`'s demo and `rum-pipeline produce` against the real broker."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from pipeline.topics import RAW
from tests.kafka_helpers import CLI, consume, isolated_env, settings_from

pytestmark = pytest.mark.kafka


def test_demo_shows_what_flowed(tmp_path: Path, test_mmdb: Path) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), COLUMNS="120")
    # The worker the demo starts sees the settings the demo was given, whichever their names:
    # a nested web port (the demo must not add the flat one), a --set topic prefix.
    env["RUM_WORKER__WEB_PORT"] = env.pop("RUM_WEB_PORT")
    prefix = "d" + env["RUM_TOPIC_PREFIX"]
    demo = ["demo", "--count", "400", "--rate", "0", "--seed", "3"]
    done = subprocess.run(
        [CLI, "--set", f"kafka.topic_prefix={prefix}", *demo],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    # Both tables come from the upsert topics, as a downstream consumer reads them.
    assert "Average cart value by country, checkouts" in out
    assert "rollup cart_value_by_country" in out
    assert "Top facet values today - from the facet index" in out
    final = re.findall(r"produced\s+(\d+)/400\s+enriched\s+(\d+)\s+bad rows\s+(\d+)", out)[-1]
    produced, enriched, bad = map(int, final)
    assert produced == 400
    assert enriched + bad == 400 and 0 < bad < 40  # about 1 % malformed on purpose
    assert "United Kingdom" in out  # the test database geolocates the generator's 81.2.69.x visitors
    upserts = int(re.findall(r"rollup upserts seen\s+(\d+)", out)[-1])
    assert upserts > 0
    assert "worker stopped" in out


def test_produce_generate_and_file(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    generated = subprocess.run(
        [CLI, "produce", "--generate", "200", "--seed", "9", "--malformed", "0.05"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "produced 200 messages" in generated.stdout
    assert "failed 0" in generated.stdout
    source = tmp_path / "lines.jsonl"
    source.write_bytes(b'{"a": 1}\n\n  \n\xff\xfe not utf-8\n{"session": {"id": "s-9"}}\n')
    from_file = subprocess.run(
        [CLI, "produce", str(source)], env=env, capture_output=True, text=True, check=True
    )
    assert "produced 3 messages" in from_file.stdout
    records = consume(settings, settings.topic(RAW), 203, timeout=60)
    assert len(records) == 203
    values = {r.value for r in records}
    assert {b'{"a": 1}', b"\xff\xfe not utf-8", b'{"session": {"id": "s-9"}}'} <= values
    keyed = [r for r in records if r.value == b'{"session": {"id": "s-9"}}']
    assert keyed[0].key == b"s-9"


def test_produce_generate_dates_actions_over_the_span(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    before = time.time() * 1000
    subprocess.run(
        [CLI, "produce", "--generate", "300", "--span", "10s", "--no-progress"],
        env=env,
        capture_output=True,
        check=True,
    )
    after = time.time() * 1000
    dates = [orjson.loads(r.value)["date"] for r in consume(settings, settings.topic(RAW), 300, timeout=60)]
    # Spread over the 10 s that end when the generator starts (within this command's run).
    assert before - 10_000 <= min(dates) and max(dates) <= after
    assert 9_000 <= max(dates) - min(dates) <= 10_000
