"""Monitor records: their keys, the partition of a monitor, and what their schemas refuse."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.monitors.evaluate import Evaluator
from pipeline.monitors.model import OVERALL, Status
from pipeline.monitors.records import event_id, event_key, monitor_partition, state_key
from pipeline.schemas import MONITOR_EVENT, MONITOR_STATE, validate_record
from tests.monitors.helpers import FR, MINUTE, T0, Table, above


def _records() -> tuple[dict[str, Any], dict[str, Any]]:
    """An event and a state record, as the evaluator makes them."""
    monitor = above(alert_recovery=90.0, warn_recovery=70.0, message="high", filter=above().filter)
    table = Table()
    table.data["cart_high"] = {FR: 150.0}
    result = Evaluator([monitor]).evaluate(T0, table)
    return result.events[0], result.states[0]


def test_keys() -> None:
    assert event_key("cart_high") == b"cart_high"
    assert state_key("cart_high", FR) == b'["cart_high",{"geo.country":"France"}]'
    assert state_key("checkouts", OVERALL) == b'["checkouts",{}]'
    two = (("geo.country", "France"), ("browser.name", None))
    assert orjson.loads(state_key("m", two)) == ["m", {"geo.country": "France", "browser.name": None}]


@pytest.mark.parametrize("partitions", [1, 3, 12, 50])
def test_a_monitor_has_the_partition_kafka_gives_its_name(partitions: int) -> None:
    every = list(range(partitions))
    for name in ("cart_value_high", "checkouts_stopped", "a", "x" * 64):
        assert monitor_partition(name, partitions) == DefaultPartitioner()(name.encode(), every, every)


def test_event_ids_are_stable_and_distinct() -> None:
    one = event_id("transition", "m", FR, T0, Status.ALERT)
    assert one == event_id("transition", "m", FR, T0, Status.ALERT)
    others = {
        event_id("renotify", "m", FR, T0, Status.ALERT),
        event_id("transition", "n", FR, T0, Status.ALERT),
        event_id("transition", "m", OVERALL, T0, Status.ALERT),
        event_id("transition", "m", FR, T0 + 1, Status.ALERT),
        event_id("transition", "m", FR, T0, Status.WARN),
    }
    assert one not in others and len(others) == 5


def test_records_as_made_are_valid() -> None:
    event, state = _records()
    assert validate_record(MONITOR_EVENT, event) == []
    assert validate_record(MONITOR_STATE, state) == []
    assert event["thresholds"] == {
        "comparator": ">",
        "alert": 100.0,
        "warn": 80.0,
        "alert_recovery": 90.0,
        "warn_recovery": 70.0,
    }
    assert event["window"] == {"start": T0 - 15 * MINUTE, "end": T0}
    assert (event["message"], state["status"], state["notified_at"]) == ("high", "ALERT", T0)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda r: r.update(to="CRITICAL"), "$.to"),
        (lambda r: r.update(kind="resolve"), "$.kind"),
        (lambda r: r.update(id="x"), "$.id"),
        (lambda r: r.update(value="150"), "$.value"),
        (lambda r: r["group"].update(x=[1]), "$.group.x"),
        (lambda r: r["window"].pop("end"), "$.window"),
        (lambda r: r["thresholds"].update(comparator="=="), "$.thresholds.comparator"),
        (lambda r: r["query"].update(aggregation="p42"), "$.query.aggregation"),
        (lambda r: r.pop("at"), "$"),
        (lambda r: r.update(note="x"), "$"),
    ],
)
def test_event_schema_refuses(change: Any, path: str) -> None:
    event = copy.deepcopy(_records()[0])
    change(event)
    errors = validate_record(MONITOR_EVENT, event)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda r: r.update(status="ok"), "$.status"),
        (lambda r: r.update(since=-1), "$.since"),
        (lambda r: r.update(monitor="Cart High"), "$.monitor"),
        (lambda r: r.update(last_data_at="now"), "$.last_data_at"),
        (lambda r: r.pop("notified_at"), "$"),
        (lambda r: r.update(schema_version="2"), "$.schema_version"),
    ],
)
def test_state_schema_refuses(change: Any, path: str) -> None:
    state = copy.deepcopy(_records()[1])
    change(state)
    errors = validate_record(MONITOR_STATE, state)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: ")
