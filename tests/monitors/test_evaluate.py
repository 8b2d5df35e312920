"""The monitor state machine: thresholds, hysteresis, no data, renotify, restarts."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.monitors.evaluate import Evaluator
from pipeline.monitors.model import OVERALL, Monitor, Status
from pipeline.query.filter import parse_filter
from tests.monitors.helpers import (
    DE,
    FR,
    IT,
    MINUTE,
    T0,
    Table,
    above,
    checked,
    compacted,
    cycle,
    transitions,
)


def run(monitor: Monitor, steps: list[dict[Any, float | None]], every: int = MINUTE) -> list[dict[str, Any]]:
    """Evaluate ``monitor`` once per step (``every`` ms apart) with that step's values; all events."""
    evaluator, table, events = Evaluator([monitor]), Table(), []
    for index, values in enumerate(steps):
        table.data[monitor.name] = values
        events += cycle(evaluator, T0 + index * every, table).events
    return events


def test_crossing_gives_exactly_one_alert_per_group() -> None:
    steps = [{FR: 50.0, DE: 60.0, IT: 70.0}] * 3 + [{FR: 150.0, DE: 120.0, IT: 70.0}] * 10
    events = run(above(), steps)
    assert transitions(events, FR) == ["OK>ALERT"]
    assert transitions(events, DE) == ["OK>ALERT"]
    assert transitions(events, IT) == []
    (fr,) = [e for e in events if e["group"] == {"geo.country": "France"}]
    assert (fr["at"], fr["value"], fr["since"]) == (T0 + 3 * MINUTE, 150.0, T0 + 3 * MINUTE)
    assert fr["thresholds"] == {"comparator": ">", "alert": 100.0, "warn": 80.0}
    assert fr["query"] == {
        "rollup": "cart_value_by_country",
        "aggregation": "avg",
        "filter": "",
        "multi": True,
    }


def test_warn_then_alert_then_recovery() -> None:
    steps: list[dict[Any, float | None]] = [{FR: v} for v in (50, 85, 90, 120, 95, 85, 40)]
    assert transitions(run(above(), steps)) == ["OK>WARN", "WARN>ALERT", "ALERT>WARN", "WARN>OK"]


def test_recovery_thresholds_hold_a_state() -> None:
    monitor = above(alert_recovery=90.0, warn_recovery=70.0)
    values = (120, 95, 91, 89, 75, 71, 65, 85, 75, 60)
    events = run(monitor, [{FR: v} for v in values])
    # 95 and 91 keep ALERT (still > 90); 89 clears it, down to WARN; 75 and 71 keep WARN (> 70).
    assert transitions(events) == ["OK>ALERT", "ALERT>WARN", "WARN>OK", "OK>WARN", "WARN>OK"]
    assert [e["value"] for e in events] == [120, 89, 65, 85, 60]


def test_below_comparator() -> None:
    monitor = above(comparator="<", alert=10.0, warn=20.0, alert_recovery=12.0)
    events = run(monitor, [{FR: v} for v in (30, 15, 5, 11, 13, 25)])
    assert transitions(events) == ["OK>WARN", "WARN>ALERT", "ALERT>WARN", "WARN>OK"]
    assert [e["value"] for e in events] == [15, 5, 13, 25]


def test_no_data_after_the_set_time() -> None:
    monitor = above(no_data_ms=10 * MINUTE)
    steps: list[dict[Any, float | None]] = [{FR: 120.0, DE: 50.0}] * 3 + [{FR: None}] * 12 + [{FR: 50.0}]
    events = run(monitor, steps)
    # Last data at minute 2: NO_DATA at minute 12 for both (DE vanished from the answer, FR became None).
    assert transitions(events, FR) == ["OK>ALERT", "ALERT>NO_DATA", "NO_DATA>OK"]
    assert transitions(events, DE) == ["OK>NO_DATA"]
    no_data = [e for e in events if e["to"] == "NO_DATA"]
    assert [e["at"] for e in no_data] == [T0 + 12 * MINUTE] * 2
    assert [e["value"] for e in no_data] == [None, None]


def test_without_no_data_a_silent_group_keeps_its_state() -> None:
    evaluator, table = Evaluator([above()]), Table()
    table.data["cart_high"] = {FR: 150.0}
    assert transitions(cycle(evaluator, T0, table).events) == ["OK>ALERT"]
    table.data["cart_high"] = {}
    for minute in range(1, 60 * 24, 7):
        assert cycle(evaluator, T0 + minute * MINUTE, table).events == []
    assert evaluator.status("cart_high", FR) is Status.ALERT


def test_an_overall_monitor_without_any_data_goes_no_data() -> None:
    monitor = above(
        name="checkouts", comparator="<", alert=1.0, warn=None, multi=False, no_data_ms=5 * MINUTE
    )
    evaluator, table = Evaluator([monitor]), Table()
    events = []
    for minute in range(8):
        events += cycle(evaluator, T0 + minute * MINUTE, table).events
    assert [(e["group"], e["from"], e["to"], e["at"]) for e in events] == [
        ({}, "OK", "NO_DATA", T0 + 5 * MINUTE)
    ]
    table.data["checkouts"] = {OVERALL: 0.0}
    assert transitions(cycle(evaluator, T0 + 8 * MINUTE, table).events) == ["NO_DATA>ALERT"]


def test_renotify_timing() -> None:
    monitor = above(renotify_ms=60 * MINUTE)
    steps: list[dict[Any, float | None]] = [{FR: 150.0, DE: 90.0}] * 150 + [{FR: 50.0, DE: 90.0}] * 100
    events = run(monitor, steps)
    fr = [(e["kind"], e["at"], e["since"]) for e in events if e["group"] == {"geo.country": "France"}]
    assert fr == [
        ("transition", T0, T0),
        ("renotify", T0 + 60 * MINUTE, T0),
        ("renotify", T0 + 120 * MINUTE, T0),
        ("transition", T0 + 150 * MINUTE, T0 + 150 * MINUTE),
    ]
    renotified = [e for e in events if e["kind"] == "renotify"]
    assert all(e["from"] == e["to"] == "ALERT" for e in renotified)
    assert transitions(events, DE) == ["OK>WARN"]  # WARN does not renotify


def test_the_window_ends_delay_ago_aligned_to_the_rollup_interval() -> None:
    monitor = above(delay_ms=2 * MINUTE, step_ms=60 * MINUTE, window_ms=120 * MINUTE)
    table = Table()
    Evaluator([monitor]).evaluate(T0 + 125 * MINUTE, table)
    assert table.calls == [("cart_high", T0, T0 + 120 * MINUTE)]
    Evaluator([above(delay_ms=MINUTE)]).evaluate(T0 + 30 * MINUTE + 59_999, table)
    assert table.calls[1] == ("cart_high", T0 + 14 * MINUTE, T0 + 29 * MINUTE)


def test_a_failing_source_skips_only_its_monitor() -> None:
    other = above(name="other")
    evaluator, table = Evaluator([above(), other]), Table()
    table.broken.add("cart_high")
    table.data["other"] = {FR: 150.0}
    result = cycle(evaluator, T0, table)
    assert result.failed == {"cart_high": "RuntimeError: view not ready"}
    assert [e["monitor"] for e in result.events] == ["other"]


def test_values_that_are_not_numbers_count_as_no_data() -> None:
    events = run(
        above(no_data_ms=2 * MINUTE), [{FR: 150.0}, {FR: float("nan")}, {FR: float("inf")}, {FR: None}]
    )
    assert transitions(events) == ["OK>ALERT", "ALERT>NO_DATA"]


def test_state_records_only_when_a_restart_must_know() -> None:
    evaluator, table = Evaluator([above(no_data_ms=30 * MINUTE)]), Table()
    written = []
    for minute, values in enumerate([{FR: 50.0}, {FR: 60.0}, {FR: 70.0}, {FR: 150.0}, {FR: 160.0}, {}, {}]):
        table.data["cart_high"] = values
        written.append(
            [(s["status"], s["last_data_at"]) for s in cycle(evaluator, T0 + minute * MINUTE, table).states]
        )
    assert written == [
        [("OK", T0)],  # a new group
        [],
        [],
        [("ALERT", T0 + 3 * MINUTE)],  # a transition
        [],
        [("ALERT", T0 + 4 * MINUTE)],  # data stopped: the no-data clock started at the last data
        [],
    ]


def _monitors() -> list[Monitor]:
    return [
        above(alert_recovery=95.0, warn_recovery=75.0, renotify_ms=3 * MINUTE),
        above(name="overall", comparator="<", alert=20.0, warn=40.0, multi=False, group_by=("geo.country",)),
    ]


values_st = st.one_of(st.none(), st.sampled_from([10.0, 30.0, 50.0, 77.0, 85.0, 97.0, 130.0]))
steps_st = st.lists(
    st.fixed_dictionaries({FR: values_st, DE: values_st, OVERALL: values_st}), min_size=2, max_size=40
)


def _source(values: dict[Any, float | None]) -> Table:
    table = Table()
    table.data["cart_high"] = {g: v for g, v in values.items() if g != OVERALL}
    table.data["overall"] = {OVERALL: values[OVERALL]}
    return table


@settings(max_examples=150, deadline=None)
@given(steps=steps_st, data=st.data())
def test_a_restart_from_the_state_topic_repeats_no_event(
    steps: list[dict[Any, float | None]], data: Any
) -> None:
    restart = data.draw(st.integers(1, len(steps) - 1), label="restart")
    alone, written, events_alone = Evaluator(_monitors()), [], []
    for index, values in enumerate(steps):
        result = checked(alone.evaluate(T0 + index * MINUTE, _source(values)))
        events_alone.append(result.events)
        if index < restart:
            written += result.states
    # A second evaluator takes over at ``restart`` from what the compacted topic holds, and from a snapshot.
    for states in (compacted(written), None):
        before = Evaluator(_monitors())
        for index in range(restart):
            before.evaluate(T0 + index * MINUTE, _source(steps[index]))
        resumed = Evaluator(_monitors(), states if states is not None else before.snapshot())
        for index in range(restart, len(steps)):
            result = checked(resumed.evaluate(T0 + index * MINUTE, _source(steps[index])))
            assert result.events == events_alone[index]


@settings(max_examples=150, deadline=None)
@given(steps=steps_st)
def test_statuses_follow_the_documented_rules(steps: list[dict[Any, float | None]]) -> None:
    """A plain re-statement of the rules, group by group, against the evaluator's statuses and events."""
    monitor = _monitors()[0]
    evaluator, expected = Evaluator([monitor]), {FR: Status.OK, DE: Status.OK}
    seen = {FR: False, DE: False}
    for index, values in enumerate(steps):
        events = checked(evaluator.evaluate(T0 + index * MINUTE, _source(values))).events
        for group in (FR, DE):
            value, before = values[group], expected[group]
            if value is not None:
                seen[group] = True
                if value > 100 or (before is Status.ALERT and value > 95):
                    expected[group] = Status.ALERT
                elif value > 80 or (before in (Status.WARN, Status.ALERT) and value > 75):
                    expected[group] = Status.WARN
                else:
                    expected[group] = Status.OK
            if seen[group]:
                assert evaluator.status("cart_high", group) is expected[group]
            moved = [e for e in events if e["group"] == dict(group) and e["kind"] == "transition"]
            assert len(moved) == (expected[group] is not before)
            assert all((e["from"], e["to"]) == (before, expected[group]) for e in moved)


def test_a_restart_never_brings_no_data_early() -> None:
    monitor = above(no_data_ms=10 * MINUTE)
    steps: list[dict[Any, float | None]] = [{FR: 150.0}] * 5 + [{}] * 20
    alone, written = Evaluator([monitor]), []
    at_alone = None
    for index, values in enumerate(steps):
        table = Table()
        table.data["cart_high"] = values
        result = alone.evaluate(T0 + index * MINUTE, table)
        written += result.states if index < 3 else []
        at_alone = at_alone or next((e["at"] for e in result.events if e["to"] == "NO_DATA"), None)
    resumed, at_resumed = Evaluator([monitor], compacted(written)), None
    for index in range(3, len(steps)):
        table = Table()
        table.data["cart_high"] = steps[index]
        events = checked(resumed.evaluate(T0 + index * MINUTE, table)).events
        assert [e["to"] for e in events] in ([], ["NO_DATA"])  # no second ALERT
        at_resumed = at_resumed or next((e["at"] for e in events if e["to"] == "NO_DATA"), None)
    assert at_alone == T0 + 14 * MINUTE
    assert at_resumed is not None and at_alone <= at_resumed <= T0 + 13 * MINUTE + 10 * MINUTE


def test_states_of_removed_monitors_and_changed_groups_are_dropped() -> None:
    first = Evaluator([above(), above(name="gone")])
    table = Table()
    table.data = {"cart_high": {FR: 150.0}, "gone": {DE: 150.0}}
    states = checked(first.evaluate(T0, table)).states
    # cart_high becomes an overall monitor, "gone" is removed from the config.
    second = Evaluator([above(multi=False)], states)
    result = checked(second.evaluate(T0 + MINUTE, Table()))
    assert sorted(result.removed) == [("cart_high", FR), ("gone", DE)]
    assert second.status("cart_high", FR) is None


def test_a_restart_keeps_the_renotify_schedule() -> None:
    monitor = above(renotify_ms=10 * MINUTE)
    table, alone, written, kinds = Table(), Evaluator([monitor]), [], []
    table.data["cart_high"] = {FR: 150.0}
    for minute in range(14):  # ALERT at 0, renotified at 10
        result = alone.evaluate(T0 + minute * MINUTE, table)
        written += result.states
        kinds += [(e["kind"], e["at"]) for e in result.events]
    assert kinds == [("transition", T0), ("renotify", T0 + 10 * MINUTE)]
    for restored in (compacted(written), alone.snapshot()):
        resumed, later = Evaluator([monitor], restored), []
        for minute in range(14, 31):
            later += [
                (e["kind"], e["at"]) for e in checked(resumed.evaluate(T0 + minute * MINUTE, table)).events
            ]
        assert later == [("renotify", T0 + 20 * MINUTE), ("renotify", T0 + 30 * MINUTE)]


def test_a_group_the_filter_no_longer_keeps_is_dropped_on_restore() -> None:
    table = Table()
    table.data["cart_high"] = {FR: 150.0, DE: 150.0}
    states = checked(Evaluator([above()]).evaluate(T0, table)).states
    narrowed = above(filter=parse_filter("-@geo.country:Germany"))
    assert narrowed.selects(FR) and not narrowed.selects(DE)
    resumed = Evaluator([narrowed], states)
    assert resumed.evaluate(T0 + MINUTE, Table()).removed == [("cart_high", DE)]
    assert (resumed.status("cart_high", FR), resumed.status("cart_high", DE)) == (Status.ALERT, None)
