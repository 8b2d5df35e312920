"""The `rum-pipeline intake` command's contract, with no broker: listening line, errors, stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from pipeline.intake.child import running_intake
from tests.kafka_helpers import CLI, isolated_env


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_port_zero_announces_the_real_port_and_sigterm_stops_it(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, RUM_KAFKA_BOOTSTRAP=f"127.0.0.1:{_closed_port()}")
    with running_intake(env, tmp_path / "intake.log", ready=False) as intake:
        lines = [line for line in intake.output().splitlines() if line.startswith("intake: listening on ")]
        assert lines == [f"intake: listening on {intake.url}"]
        assert not intake.url.endswith(":0")
        with urllib.request.urlopen(f"{intake.url}/metrics", timeout=5) as response:
            assert b"rum_intake_kafka_ready 0.0" in response.read()
        intake.process.send_signal(signal.SIGTERM)
        assert intake.process.wait(30) == 0
    assert "NO CLIENT TOKENS CONFIGURED" in intake.output()  # an open intake says so at start


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, RUM_KAFKA_BOOTSTRAP=f"127.0.0.1:{_closed_port()}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [CLI, "intake", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert f"cannot listen on http://127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_settings_are_named_before_anything_starts(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, RUM_INTAKE_CLIENT_TOKENS="no-equals-sign")
    done = subprocess.run([CLI, "intake", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "RUM_INTAKE_CLIENT_TOKENS" in done.stderr and "listening" not in done.stdout


def test_json_logs_when_asked(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, RUM_KAFKA_BOOTSTRAP=f"127.0.0.1:{_closed_port()}", RUM_LOG_FORMAT="json")
    with running_intake(env, tmp_path / "intake.log", ready=False) as intake:
        intake.process.send_signal(signal.SIGTERM)
        assert intake.process.wait(30) == 0
    logged = [line for line in intake.output().splitlines() if not line.startswith("intake: listening on ")]
    records = [json.loads(line) for line in logged if line.startswith("{")]
    assert any("NO CLIENT TOKENS CONFIGURED" in r["message"] and r["level"] == "WARNING" for r in records)
    # Every line is one JSON object, but for the listening line on stdout and the sketch library's exit note.
    assert all(line.startswith("{") or line.startswith("nanobind:") for line in logged), logged
