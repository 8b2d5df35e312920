"""The local broker comes back with its data after a kill -9 and `make broker`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.kafka_helpers import CLI, EXTERNAL_BOOTSTRAP, consume, isolated_env, settings_from

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
PIDFILE = ROOT / ".broker" / "broker.pid"


@pytest.mark.skipif(bool(EXTERNAL_BOOTSTRAP), reason="an external cluster is in use")
def test_broker_survives_kill_9(tmp_path: Path) -> None:
    if not PIDFILE.exists():
        pytest.skip("the broker in use was not started by scripts/broker.sh")
    env = isolated_env(tmp_path)
    settings = settings_from(env)
    subprocess.run([CLI, "topics", "create"], env=env, check=True, capture_output=True)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"n": {i}}}\n' for i in range(50)))
    subprocess.run([CLI, "produce", str(source), "--no-progress"], env=env, check=True, capture_output=True)
    topic = settings.topic("rum.actions.raw")
    pid = int(PIDFILE.read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    restarted = subprocess.run(
        ["make", "-s", "broker"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert restarted.returncode == 0, restarted.stderr
    assert int(PIDFILE.read_text()) != pid
    records = consume(settings, topic, 50, timeout=60)
    assert sorted(r.value for r in records) == sorted(f'{{"n": {i}}}'.encode() for i in range(50))
