"""`make run` (scripts/run-demo.sh): the explorer's URL, the answer to the guide's question from
`rum-pipeline query`, and the demo monitor the traffic trips, evaluated by the serve it keeps up."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.kafka_helpers import isolated_env

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def test_make_run_ends_with_the_average_cart_value_by_country(tmp_path: Path, test_mmdb: Path) -> None:
    env = isolated_env(tmp_path, RUM_GEOIP_DATABASE=str(test_mmdb), COLUMNS="120", SERVE_PORT="0")
    done = subprocess.run(
        [str(ROOT / "scripts" / "run-demo.sh"), "--count", "400", "--rate", "0", "--seed", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^Explorer: http://127\.0\.0\.1:\d+/ ", done.stdout, re.MULTILINE), done.stdout[:2000]
    answer = done.stdout.split("Average cart value by country over the last day (rolling 24 h):")[-1]
    answer, monitors = answer.split("Monitors evaluated by serve")
    # The demo monitor is in ALERT, and its transition was written to the events topic.
    assert re.search(r"demo_checkout_rush\s*│\s*ALERT", monitors), monitors
    assert re.search(r"demo_checkout_rush\s*│\s*\(all\)\s*│\s*OK -> ALERT", monitors), monitors
    assert "$ rum-pipeline query cart_value_by_country --last 1d" in answer
    assert "cart_value_by_country: avg, count, p95" in answer
    # The test database geolocates the generator's 81.2.69.x visitors.
    assert "United Kingdom" in answer
    assert "1h" in answer or "1m" in answer  # the windows the answer was composed from
