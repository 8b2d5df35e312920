"""scripts/broker.sh and the test helpers read kafka.port and kafka.bootstrap under either name.

Nothing is started: `broker.sh settings` prints what the script would use,
and `start` with a bootstrap set returns before touching any broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "scripts" / "broker.sh")


def _env(**given: str) -> dict[str, str]:
    names = ("RUM_KAFKA_PORT", "RUM_KAFKA__PORT", "RUM_KAFKA_BOOTSTRAP", "RUM_KAFKA__BOOTSTRAP")
    return {**{k: v for k, v in os.environ.items() if k not in names}, **given}


def _script(*args: str, **given: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], env=_env(**given), capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("given", "port", "bootstrap"),
    [
        ({}, "9092", ""),
        ({"RUM_KAFKA_PORT": "19101"}, "19101", ""),
        ({"RUM_KAFKA__PORT": "19102"}, "19102", ""),
        ({"RUM_KAFKA__PORT": "19103", "RUM_KAFKA_PORT": "19104"}, "19103", ""),
        ({"RUM_KAFKA_BOOTSTRAP": "a:1"}, "9092", "a:1"),
        ({"RUM_KAFKA__BOOTSTRAP": "b:2"}, "9092", "b:2"),
        ({"RUM_KAFKA__BOOTSTRAP": "b:2", "RUM_KAFKA_BOOTSTRAP": "a:1"}, "9092", "b:2"),
    ],
)
def test_the_script_reads_either_name_nested_first(given: dict[str, str], port: str, bootstrap: str) -> None:
    done = _script("settings", **given)
    assert done.returncode == 0, done.stderr
    assert f"port={port} bootstrap={bootstrap} " in done.stdout


def test_a_nested_bootstrap_means_no_broker_is_started() -> None:
    done = _script("start", RUM_KAFKA__BOOTSTRAP="kafka-1:9092")
    assert done.returncode == 0, done.stderr
    assert "kafka.bootstrap=kafka-1:9092 is set: using that cluster, starting nothing" in done.stderr


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"RUM_KAFKA__PORT": "19105"}, "127.0.0.1:19105 None 19105"),
        ({"RUM_KAFKA_PORT": "19106"}, "127.0.0.1:19106 None 19106"),
        ({"RUM_KAFKA__BOOTSTRAP": "b:2", "RUM_KAFKA_BOOTSTRAP": "a:1"}, "b:2 b:2 9092"),
    ],
)
def test_the_test_helpers_read_either_name(given: dict[str, str], expected: str) -> None:
    code = "from tests import kafka_helpers as k; print(k.BOOTSTRAP, k.EXTERNAL_BOOTSTRAP, k.PORT)"
    env = {**_env(**given), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == expected.split()


def test_the_broker_script_environment_replaces_both_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.kafka_helpers import broker_script_env

    for name, value in {"RUM_KAFKA__PORT": "9092", "RUM_KAFKA_BOOTSTRAP": "127.0.0.1:9092"}.items():
        monkeypatch.setenv(name, value)
    env = broker_script_env(19107, tmp_path / "broker")
    assert {k: v for k, v in env.items() if k.startswith("RUM_KAFKA")} == {"RUM_KAFKA__PORT": "19107"}
    done = subprocess.run([SCRIPT, "settings"], env=env, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == f"port=19107 bootstrap= state={tmp_path / 'broker'}"
