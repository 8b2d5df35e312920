"""The pipeline on a SASL_PLAINTEXT listener of the real local broker (mechanism PLAIN).

scripts/broker.sh gives the local broker a SASL_PLAINTEXT listener on its
port + 2 with one user (rum / rum-secret); every client of the pipeline must
authenticate there: topic creation, `rum-pipeline produce`, the worker's faust
consumer and producer, the rollup stage's readers, and downstream readers.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from pipeline.generate import TrafficGenerator
from pipeline.schemas import validate_record
from pipeline.topics import BAD, ENRICHED, ROLLUPS
from tests.kafka_helpers import (
    CLI,
    EXTERNAL_BOOTSTRAP,
    PORT,
    consume,
    isolated_env,
    run_worker,
    settings_from,
)
from tests.rollup_truth import latest_records

pytestmark = pytest.mark.kafka

SASL_BOOTSTRAP = f"127.0.0.1:{PORT + 2}"
USER, PASSWORD = "rum", "rum-secret"  # as in scripts/broker.sh
TOTAL = 300


@pytest.fixture(scope="module", autouse=True)
def sasl_listener() -> None:
    """Skip on an external cluster; fail clearly when the local broker has no SASL listener."""
    external = EXTERNAL_BOOTSTRAP
    if external and external != f"127.0.0.1:{PORT}":
        pytest.skip(
            f"kafka.bootstrap={external} names an external cluster: the SASL_PLAINTEXT test "
            "listener exists only on the local broker of scripts/broker.sh"
        )
    try:
        socket.create_connection(("127.0.0.1", PORT + 2), timeout=2).close()
    except OSError:
        pytest.fail(
            f"nothing listens on {SASL_BOOTSTRAP}, the local broker's SASL_PLAINTEXT listener: the broker "
            "was probably started by an older scripts/broker.sh; restart it (make broker-stop; make broker)"
        )


def _sasl_env(tmp_path: Path, password: str = PASSWORD, **extra: str) -> dict[str, str]:
    return isolated_env(
        tmp_path,
        RUM_KAFKA_BOOTSTRAP=SASL_BOOTSTRAP,
        RUM_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        RUM_SASL_MECHANISM="PLAIN",
        RUM_SASL_USERNAME=USER,
        RUM_SASL_PASSWORD=password,
        **extra,
    )


def test_worker_enriches_and_rolls_up_over_sasl(tmp_path: Path, test_mmdb: Path) -> None:
    env = _sasl_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb))
    settings = settings_from(env)
    actions = list(TrafficGenerator(seed=5).messages(TOTAL))
    source = tmp_path / "actions.jsonl"
    source.write_bytes(b"".join(m.value + b"\n" for m in actions))

    created = subprocess.run([CLI, "topics", "create"], env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    produced = subprocess.run(
        [CLI, "produce", str(source), "--no-progress"], env=env, capture_output=True, text=True, timeout=120
    )
    assert produced.returncode == 0, produced.stderr
    assert f"produced {TOTAL} messages" in produced.stdout

    with run_worker(env, tmp_path / "worker.log") as worker:
        enriched = consume(settings, settings.topic(ENRICHED), TOTAL, timeout=120)
        counted = 0
        deadline = time.monotonic() + 90
        while counted != TOTAL and time.monotonic() < deadline:
            upserts = latest_records(settings, settings.topic(ROLLUPS))
            # Every action counts once in the daily windows of actions_by_name.
            counted = sum(
                r["aggregations"]["count"]
                for r in upserts.values()
                if r["rollup"] == "actions_by_name" and r["interval"] == "1d"
            )
            if counted != TOTAL:
                time.sleep(1)
        assert worker.process.poll() is None, worker.tail()
    assert counted == TOTAL, worker.tail()
    assert all(validate_record("measure-rollup.v1", r) == [] for r in upserts.values())
    assert consume(settings, settings.topic(BAD), 0, timeout=1) == []

    assert len(enriched) == TOTAL
    ids = []
    for record in enriched:
        event = orjson.loads(record.value)
        assert validate_record("enriched-action.v1", event) == []
        ids.append(event["action"]["id"])
    assert sorted(ids) == sorted(orjson.loads(m.value)["action"]["id"] for m in actions)


@pytest.mark.parametrize("command", [["worker"], ["produce", "--generate", "5", "--no-progress"]])
def test_a_wrong_password_is_one_clear_line(tmp_path: Path, command: list[str]) -> None:
    env = _sasl_env(tmp_path, password="not-the-password")
    result = subprocess.run([CLI, *command], env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: cannot connect to Kafka at {SASL_BOOTSTRAP}: SASL PLAIN authentication as 'rum' failed "
        "(Authentication failed: Invalid username or password); "
        "check RUM_SASL_USERNAME, RUM_SASL_PASSWORD and RUM_SASL_MECHANISM"
    ], output
    assert "Traceback" not in output
    assert "not-the-password" not in output
