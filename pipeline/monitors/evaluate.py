"""The monitor state machine: values in, states and transitions out, no I/O.

Each cycle, for every monitor, a :class:`Source` gives the value of the
monitor's aggregation over its window for each group (None: no data). The
:class:`Evaluator` moves each (monitor, group) between OK, WARN, ALERT and
NO_DATA and returns:

- ``events``: a ``monitor-event.v1`` record per transition and per renotification;
- ``states``: a ``monitor-state.v1`` record for each state that changed in a way
  a restart must know (status, notification, data stopping or resuming, a new group);
- ``removed``: states of monitors or groups no longer configured (tombstones).

Rules, for comparator ``>`` (the others mirror them):

- value > alert -> ALERT; else value > warn -> WARN; else OK;
- with ``alert_recovery``, ALERT lasts while value > alert_recovery (hysteresis);
  ``warn_recovery`` likewise holds WARN (also after an ALERT clears);
- no value for ``no_data`` (from the last evaluation with one) -> NO_DATA; without
  ``no_data``, a group without data keeps its state;
- ALERT and NO_DATA are notified again every ``renotify`` while they last.

A new Evaluator given the state records last emitted (the compacted topic)
repeats no event. One thing is deliberately approximate: a group that still
had data at its last state record starts its no-data clock at the first
evaluation after the restart, so NO_DATA can come late by the downtime, never early.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.monitors.model import BREACHES, OVERALL, RENOTIFIED, Group, Monitor, Status, group_from_object
from pipeline.monitors.records import event_context, event_record, state_record

log = logging.getLogger(__name__)

Values = Mapping[Group, float | None]


class Source(Protocol):
    """Where values come from; the rollup view implements it in ``serve``."""

    def values(self, monitor: Monitor, start_ms: int, end_ms: int) -> Values:
        """The monitor's aggregation over ``[start_ms, end_ms)`` per group.

        Groups are filtered by ``monitor.filter`` already; with ``monitor.multi``
        false there is one group, ``()``, over every matching group. A group
        whose windows hold no data maps to None or is left out.
        """
        ...


@dataclass(slots=True)
class GroupState:
    """One monitor's state for one group, as kept between cycles."""

    status: Status
    since_ms: int
    value: float | None = None
    #: Last evaluation with data (None: restored while data flowed; the clock restarts).
    data_ms: int | None = None
    has_data: bool = False
    notified_ms: int | None = None


@dataclass(slots=True)
class CycleResult:
    """What one cycle produced, in evaluation order."""

    events: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    removed: list[tuple[str, Group]] = field(default_factory=list)
    #: Monitors whose source failed this cycle -> the error; their states are unchanged.
    failed: dict[str, str] = field(default_factory=dict)


class Evaluator:
    """Evaluates monitors cycle after cycle; restores from state records."""

    def __init__(self, monitors: Iterable[Monitor], states: Iterable[Mapping[str, Any]] = ()) -> None:
        self.monitors = {m.name: m for m in monitors}
        self._states: dict[str, dict[Group, GroupState]] = {name: {} for name in self.monitors}
        self._stale: list[tuple[str, Group]] = []
        self._evaluated: dict[str, int] = {}
        self.restore(states)

    def restore(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Take states from ``monitor-state.v1`` records (the latest per key wins, as compaction keeps).

        States of monitors no longer configured, or of groups of another shape
        (the monitor's rollup or ``multi`` changed), are dropped and reported in
        the next cycle's ``removed``.
        """
        for record in records:
            name = record["monitor"]
            monitor = self.monitors.get(name)
            order = monitor.group_by if monitor else ()
            group = group_from_object(dict(record["group"]), order)
            if monitor is None or not monitor.accepts(group):
                self._stale.append((name, group))
                continue
            data_ms, evaluated = record["last_data_at"], record["evaluated_at"]
            has_data = data_ms is not None and data_ms >= evaluated
            self._states[name][group] = GroupState(
                status=Status(record["status"]),
                since_ms=record["since"],
                value=record["value"],
                data_ms=None if has_data else data_ms,
                has_data=has_data,
                notified_ms=record["notified_at"],
            )

    def status(self, monitor: str, group: Group = OVERALL) -> Status | None:
        """The current status of ``monitor`` for ``group``; None when never evaluated."""
        state = self._states.get(monitor, {}).get(group)
        return None if state is None else state.status

    def snapshot(self) -> list[dict[str, Any]]:
        """Every current state as ``monitor-state.v1`` records, as of each monitor's last cycle."""
        out = []
        for name, groups in self._states.items():
            for group, st in groups.items():
                at = self._evaluated.get(name, st.since_ms)
                data_ms = at if st.has_data else st.data_ms
                out.append(
                    state_record(
                        name, dict(group), st.status, st.since_ms, st.value, at, data_ms, st.notified_ms
                    )
                )
        return out

    def evaluate(self, now_ms: int, source: Source) -> CycleResult:
        """One cycle at ``now_ms`` over every monitor; a source failing for one monitor skips only it."""
        result = CycleResult(removed=self._stale)
        self._stale = []
        for monitor in self.monitors.values():
            start, end = monitor.evaluation_range(now_ms)
            try:
                values = source.values(monitor, start, end)
            except Exception as exc:  # one broken query must not stop the other monitors
                log.warning("monitor %s: no values: %s", monitor.name, exc)
                result.failed[monitor.name] = f"{type(exc).__name__}: {exc}"
                continue
            self.evaluate_monitor(monitor, now_ms, values, result)
        return result

    def evaluate_monitor(
        self, monitor: Monitor, now_ms: int, values: Values, result: CycleResult | None = None
    ) -> CycleResult:
        """Apply one monitor's ``values`` at ``now_ms``; events and states go into ``result``."""
        result = CycleResult() if result is None else result
        states = self._states[monitor.name]
        context = event_context(monitor, monitor.evaluation_range(now_ms))
        name, events = monitor.name, result.events
        breach = BREACHES[monitor.comparator]
        alert, warn = monitor.alert, monitor.warn
        alert_rec = alert if monitor.alert_recovery is None else monitor.alert_recovery
        # Unused without warn (the WARN branch tests warn first); a float keeps the loop simple.
        warn_rec = monitor.warn_recovery if monitor.warn_recovery is not None else (warn or alert)
        no_data, renotify = monitor.no_data_ms, monitor.renotify_ms
        self._evaluated[monitor.name] = now_ms
        groups: Iterable[Group]
        if not monitor.multi:
            groups = (OVERALL,)
        elif states.keys() <= values.keys():
            groups = values.keys()  # the usual cycle: every known group still reports
        else:
            groups = list({**dict.fromkeys(values), **dict.fromkeys(states)})
        for group in groups:
            value = values.get(group)
            if value is not None and not math.isfinite(value):
                value = None  # JSON has no NaN or infinity: an aggregation without a value is no data
            st = states.get(group)
            dirty = st is None
            if st is None:
                if value is None and monitor.multi:
                    continue  # a group is born with its first value
                st = states[group] = GroupState(Status.OK, now_ms, data_ms=now_ms)
            before = st.status
            if value is not None:
                if not st.has_data:
                    dirty = st.has_data = True
                st.value, st.data_ms = value, now_ms
                if breach(value, alert) or (before is Status.ALERT and breach(value, alert_rec)):
                    after = Status.ALERT
                elif warn is not None and (
                    breach(value, warn) or (before in (Status.WARN, Status.ALERT) and breach(value, warn_rec))
                ):
                    after = Status.WARN
                else:
                    after = Status.OK
            else:
                if st.has_data or st.data_ms is None:
                    dirty, st.has_data = True, False
                    if st.data_ms is None:  # restored while data flowed: the clock starts now
                        st.data_ms = now_ms
                gone = no_data is not None and now_ms - st.data_ms >= no_data
                after = Status.NO_DATA if gone else before
            if after is not before:
                st.status, st.since_ms, st.notified_ms, dirty = after, now_ms, now_ms, True
                obj = dict(group)
                events.append(
                    event_record("transition", name, obj, now_ms, before, after, value, now_ms, context)
                )
            elif (
                renotify is not None
                and before in RENOTIFIED
                and now_ms - (st.notified_ms or st.since_ms) >= renotify
            ):
                st.notified_ms, dirty = now_ms, True
                obj = dict(group)
                events.append(
                    event_record("renotify", name, obj, now_ms, before, before, value, st.since_ms, context)
                )
            else:
                obj = None
            if dirty:
                data_ms = now_ms if st.has_data else st.data_ms
                result.states.append(
                    state_record(
                        name,
                        dict(group) if obj is None else obj,
                        st.status,
                        st.since_ms,
                        st.value,
                        now_ms,
                        data_ms,
                        st.notified_ms,
                    )
                )
        return result
