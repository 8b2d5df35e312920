"""The chaos scenarios at reduced size (``make chaos`` runs them bigger, with the kill -9 one).

The kill -9 scenario is left to tests/integration/test_rollups.py, which runs
it at 60,000 actions already. The broker scenario starts a broker of its own
(free port, state in the test's folder) so that stopping it disturbs nobody.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos_geoip import geoip_swap
from tests.chaos_helpers import LocalBroker
from tests.chaos_scenarios import Context, Outcome, broker_outage, rebalance
from tests.kafka_helpers import BOOTSTRAP

pytestmark = pytest.mark.kafka


def _free_port_pair() -> int:
    """A port whose successor is free too (the broker's controller takes port + 1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def _passed(outcome: Outcome) -> None:
    assert outcome.passed, "\n".join(outcome.problems[:20])
    assert outcome.raw > 0 and outcome.enriched + outcome.bad >= outcome.raw


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(_free_port_pair(), tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_stop_and_start_mid_stream(tmp_path: Path, own_broker: LocalBroker) -> None:
    ctx = Context(tmp_path, own_broker.bootstrap, random.Random(7), check_timeout=180)
    outcome = broker_outage(ctx, own_broker, actions=5000, outages=1, downtime=10, rate=1000)
    _passed(outcome)
    assert outcome.disruptions[0].startswith("broker unreachable")


def test_worker_joins_then_first_worker_leaves(tmp_path: Path) -> None:
    ctx = Context(tmp_path, BOOTSTRAP, random.Random(8), check_timeout=180)
    outcome = rebalance(ctx, actions=6000, cycles=1, rate=1000)
    _passed(outcome)
    assert outcome.disruptions == ["worker 1 joined", "worker 0 left"]


def test_geoip_database_swapped_while_running(tmp_path: Path) -> None:
    ctx = Context(tmp_path, BOOTSTRAP, random.Random(9), check_timeout=180)
    _passed(geoip_swap(ctx, actions=3000, swaps=1, rate=1500))
