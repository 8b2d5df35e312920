"""Monitor values from the live rollup view: the :class:`~pipeline.monitors.evaluate.Source` of ``serve``.

A monitor's range is covered by the rollup's windows exactly as a query's is
(``pipeline.view.ranges.cover``: the largest windows that fit, smaller ones at
the edges), and each group's entries are merged by the query's own merge
(``pipeline.view.merge.merge_entries``), so a monitor sees the number
``GET /api/v1/query`` gives for the same range. Monitors of one rollup over the
same range share one pass over its windows per cycle, and those of the same
aggregation too share its values (:meth:`ViewSource.new_cycle` starts a cycle);
which groups a monitor's filter keeps is remembered across cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.monitors.model import OVERALL, Group, Monitor, group_from_object
from pipeline.view.catalog import Catalog
from pipeline.view.merge import merge_entries
from pipeline.view.ranges import cover
from pipeline.view.store import Entry, GroupKey, ViewStore

_Collected = dict[GroupKey, list[Entry]]


class ViewSource:
    """Values of monitors' aggregations over the windows held by a :class:`ViewStore`."""

    def __init__(self, store: ViewStore, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog
        #: (rollup, start, end) -> entries per group, for the current cycle only.
        self._collected: dict[tuple[str, int, int], _Collected] = {}
        #: (rollup, start, end, aggregation) -> value per group, for the current cycle only.
        self._values: dict[tuple[str, int, int, str], dict[GroupKey, float | None]] = {}
        #: (monitor, group key) -> the monitor's group, or None when its filter drops the group.
        self._groups: dict[tuple[str, GroupKey], Group | None] = {}

    def new_cycle(self) -> None:
        """Forget the windows read in the last cycle (the view has moved on since)."""
        self._collected.clear()
        self._values.clear()
        if len(self._groups) > 1_000_000:  # groups come and go: bound what is remembered
            self._groups.clear()

    def _collect(self, rollup: str, start: int, end: int) -> _Collected:
        key = (rollup, start, end)
        found = self._collected.get(key)
        if found is not None:
            return found
        info = self.catalog.rollups.get(rollup)
        if info is None:
            raise LookupError(f"rollup {rollup!r} is not in the catalog of this serve")
        per_group: _Collected = {}
        for window in cover(start, end, info.intervals_s).windows:
            for group, entry in self.store.rollup_window(rollup, window.interval_s, window.start).items():
                entries = per_group.get(group)
                if entries is None:
                    per_group[group] = [entry]
                else:
                    entries.append(entry)
        self._collected[key] = per_group
        return per_group

    def _group(self, monitor: Monitor, key: GroupKey) -> Group | None:
        """The monitor's group for a store group key (attributes in the monitor's order), or None."""
        cached = (monitor.name, key)
        if cached in self._groups:
            return self._groups[cached]
        names = self.store.group_names.get(monitor.rollup, monitor.group_by)
        group = group_from_object(dict(zip(names, key, strict=False)), monitor.group_by)
        kept = group if not monitor.filter.text or monitor.selects(group) else None
        self._groups[cached] = kept
        return kept

    def values(self, monitor: Monitor, start_ms: int, end_ms: int) -> Mapping[Group, float | None]:
        """The monitor's aggregation over ``[start_ms, end_ms)``, per kept group or over all of them."""
        per_group = self._collect(monitor.rollup, start_ms, end_ms)
        aggs = (monitor.aggregation,)
        sketches = self.store.sketch_data
        if not monitor.multi:
            entries: list[Entry] = []
            for key, found in per_group.items():
                if self._group(monitor, key) is not None:
                    entries.extend(found)
            if not entries:
                return {OVERALL: None}
            return {OVERALL: _number(merge_entries(entries, aggs, sketches)[monitor.aggregation])}
        # Monitors of the same rollup, range and aggregation (thresholds or filters apart) share values.
        shared = (monitor.rollup, start_ms, end_ms, monitor.aggregation)
        values = self._values.get(shared)
        if values is None:
            agg = monitor.aggregation
            values = {
                key: _number(merge_entries(found, aggs, sketches)[agg]) for key, found in per_group.items()
            }
            self._values[shared] = values
        out: dict[Group, float | None] = {}
        for key, value in values.items():
            group = self._group(monitor, key)
            if group is not None:
                out[group] = value
        return out


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
