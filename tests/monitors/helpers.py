"""Shared pieces of the monitor tests: a source of chosen values and schema-checked cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.monitors.evaluate import CycleResult, Evaluator
from pipeline.monitors.model import Group, Monitor
from pipeline.monitors.records import state_key
from pipeline.schemas import MONITOR_EVENT, MONITOR_STATE, validate_record

MINUTE = 60_000
T0 = 1_764_288_000_000  # 2025-11-28 00:00 UTC, in ms: a whole day

FR: Group = (("geo.country", "France"),)
DE: Group = (("geo.country", "Germany"),)
IT: Group = (("geo.country", "Italy"),)


def above(**changes: Any) -> Monitor:
    """A multi-alert monitor: ALERT over 100, WARN over 80, per country; ``changes`` override."""
    fields: dict[str, Any] = {
        "name": "cart_high",
        "rollup": "cart_value_by_country",
        "aggregation": "avg",
        "comparator": ">",
        "alert": 100.0,
        "warn": 80.0,
        "window_ms": 15 * MINUTE,
        "group_by": ("geo.country",),
        **changes,
    }
    return Monitor(**fields)


class Table:
    """A Source answering each monitor with the values a test set; records every call."""

    def __init__(self) -> None:
        self.data: dict[str, Mapping[Group, float | None]] = {}
        self.calls: list[tuple[str, int, int]] = []
        self.broken: set[str] = set()

    def values(self, monitor: Monitor, start_ms: int, end_ms: int) -> Mapping[Group, float | None]:
        self.calls.append((monitor.name, start_ms, end_ms))
        if monitor.name in self.broken:
            raise RuntimeError("view not ready")
        return self.data.get(monitor.name, {})


def checked(result: CycleResult) -> CycleResult:
    """``result`` after checking that every record in it is valid against its schema."""
    for event in result.events:
        assert validate_record(MONITOR_EVENT, event) == [], event
    for state in result.states:
        assert validate_record(MONITOR_STATE, state) == [], state
    return result


def cycle(evaluator: Evaluator, now_ms: int, source: Table) -> CycleResult:
    """One schema-checked evaluation cycle."""
    return checked(evaluator.evaluate(now_ms, source))


def compacted(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a compacted state topic keeps of ``records``: the latest per key."""
    latest: dict[bytes, dict[str, Any]] = {}
    for record in records:
        order = tuple(record["group"])
        key = state_key(record["monitor"], tuple((k, record["group"][k]) for k in order))
        latest.pop(key, None)  # re-inserted: keeps the order of the latest writes
        latest[key] = record
    return list(latest.values())


def transitions(events: Iterable[dict[str, Any]], group: Mapping[str, Any] | None = None) -> list[str]:
    """``"OK>ALERT"`` strings of the transition events (of one group if given), in order."""
    return [
        f"{e['from']}>{e['to']}"
        for e in events
        if e["kind"] == "transition" and (group is None or e["group"] == dict(group))
    ]
