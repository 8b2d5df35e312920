"""Answering a checked query from a :class:`~pipeline.view.store.ViewStore`.

A range is covered by the largest windows that fit inside it and smaller ones
at its edges (``ranges.cover``); the records of those windows, held as columns
between queries (``columns``), are merged per group (``fastmerge``). Every
answer says which windows it used, whether any of them is not final yet, how
many late actions fell in them (the ``<rollup>:late`` records of the same
windows: actions that arrived after the window was final, counted there and
not in the window), and what it approximated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.rollups.compiled import DEFAULT_FACET_INTERVALS, LATE_SUFFIX
from pipeline.rollups.windows import SECOND_MS
from pipeline.view.fastmerge import Columns, merge_columns
from pipeline.view.ranges import Cover, buckets, cover, iso
from pipeline.view.request import FacetQuery, Limits, Query, QueryError
from pipeline.view.store import GroupKey, ViewStore


class _Usage:
    """What the windows of one answer were: how many, final or not, late actions in them."""

    def __init__(self) -> None:
        self.windows: dict[str, int] = {}
        self.open = 0
        self.late = 0
        self.approximations: list[str] = []

    def add(self, used: Cover, finals: list[bool], late: int) -> None:
        for name, n in used.counts().items():
            self.windows[name] = self.windows.get(name, 0) + n
        self.open += sum(1 for f in finals if not f)
        self.late += late

    def report(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "final": self.open == 0,
            "open_windows": self.open,
            "late": self.late,
            "approximations": self.approximations,
        }


def _widened(used: Cover) -> str | None:
    if used.asked is None:
        return None
    return (
        f"the range {iso(used.asked[0])} .. {iso(used.asked[1])} is not aligned to the smallest window: "
        f"widened to {iso(used.start)} .. {iso(used.end)}"
    )


def _collect(
    store: ViewStore, query: Query, used: Cover, matches: Callable[[GroupKey], bool]
) -> tuple[Columns, list[GroupKey], list[bool], int]:
    """The columns of the windows of ``used`` that hold records, the matching groups in them,
    each window's finality, and the late count."""
    name = query.rollup.name
    cache = store.window_cache
    columns: Columns = []
    finals: list[bool] = []
    late = 0
    # A window without any record is final unless it may still get some: it has not
    # ended plus the grace period yet.
    pending_after = None if query.now_ms is None else query.now_ms - query.rollup.grace_ms
    for window in used.windows:
        groups = store.rollup_window(name, window.interval_s, window.start)
        if groups:
            key = (name, window.interval_s, window.start)
            found = cache.window(key, groups)
            columns.append((key, found))
            finals.append(found.final)
        else:
            finals.append(pending_after is None or window.end <= pending_after)
        for entry in store.rollup_window(name + LATE_SUFFIX, window.interval_s, window.start).values():
            late += entry.actions
    chosen: list[GroupKey] = []
    if columns:
        present = np.zeros(len(cache.gids(name)), bool)
        for _, found in columns:
            present[found.gids] = True
        by_id = cache.groups(name)
        chosen = [by_id[i] for i in np.flatnonzero(present).tolist() if matches(by_id[i])]
    return columns, chosen, finals, late


def _matcher(store: ViewStore, query: Query) -> Callable[[GroupKey], bool]:
    """Whether a group passes ``where`` (cached per group: a filter runs once per group)."""
    if query.where is None:
        return lambda group: True
    names = store.group_names.get(query.rollup.name, query.rollup.group_by)
    where = query.where
    seen: dict[GroupKey, bool] = {}

    def matches(group: GroupKey) -> bool:
        found = seen.get(group)
        if found is None:
            event: dict[str, Any] = {}
            for path, value in zip(names, group, strict=False):
                node = event
                *parents, leaf = path.split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = value
            found = seen[group] = where.matches(event)
        return found

    return matches


def _group_dict(names: tuple[str, ...], group: GroupKey) -> dict[str, Any]:
    return dict(zip(names, group, strict=False))


def _rank(values: dict[GroupKey, dict[str, Any]], by: str) -> list[GroupKey]:
    """Groups by ``by`` descending; groups without a value last."""
    return sorted(values, key=lambda g: (values[g][by] is None, -(values[g][by] or 0), repr(g)))


def run_query(store: ViewStore, query: Query, limits: Limits) -> dict[str, Any]:
    """The answer to ``query`` as JSON-friendly data."""
    info = query.rollup
    names = store.group_names.get(info.name, info.group_by)
    matches = _matcher(store, query)
    usage = _Usage()
    usage.approximations.extend(query.notes)
    whole = cover(query.start, query.end, info.intervals_s)
    columns, groups, finals, late = _collect(store, query, whole, matches)
    usage.add(whole, finals, late)
    note = _widened(whole)
    if note:
        usage.approximations.append(note)
    totals = merge_columns(store, columns, groups, query.aggregations)
    if query.top is not None and query.by is not None:
        chosen = _rank(totals, query.by)[: query.top]
    else:
        chosen = sorted(totals, key=repr)
        if len(chosen) > limits.max_groups:
            usage.approximations.append(
                f"{len(chosen)} groups: only the first {limits.max_groups} are listed (use top)"
            )
            chosen = chosen[: limits.max_groups]
    answer: dict[str, Any] = {
        "rollup": info.name,
        "from": iso(whole.start),
        "to": iso(whole.end),
        "from_ms": whole.start,
        "to_ms": whole.end,
        "aggregations": list(query.aggregations),
        "group_by": list(names),
        "groups_total": len(totals),
        "groups": [{"group": _group_dict(names, g), "values": totals[g]} for g in chosen],
    }
    if query.every_ms is not None:
        answer["every"] = query.every_ms // SECOND_MS
        answer["series"] = _series(store, query, whole, chosen, names, limits)
        # The series covers the same range with (possibly) smaller windows: report its windows.
        usage = _series_usage(store, query, whole, usage)
    answer.update(usage.report())
    return answer


def _series(
    store: ViewStore,
    query: Query,
    whole: Cover,
    chosen: list[GroupKey],
    names: tuple[str, ...],
    limits: Limits,
) -> list[dict[str, Any]]:
    """One point per bucket of ``every``, for the groups of the answer."""
    assert query.every_ms is not None
    wanted = set(chosen)
    cuts = buckets(whole.start, whole.end, query.every_ms)
    merged = 0
    points = []
    for start, end in cuts:
        used = cover(start, end, query.rollup.intervals_s)
        merged += len(used.windows)
        if merged > limits.max_windows:
            raise QueryError("every", f"the series would merge more than {limits.max_windows} windows")
        columns, groups, _, _ = _collect(store, query, used, lambda g: g in wanted)
        values = merge_columns(store, columns, groups, query.aggregations)
        points.append(
            {
                "from": iso(start),
                "from_ms": start,
                "to_ms": end,
                "groups": [
                    {"group": _group_dict(names, g), "values": values[g]} for g in chosen if g in values
                ],
            }
        )
    return points


def _series_usage(store: ViewStore, query: Query, whole: Cover, overall: _Usage) -> _Usage:
    usage = _Usage()
    usage.approximations = overall.approximations
    assert query.every_ms is not None
    for start, end in buckets(whole.start, whole.end, query.every_ms):
        used = cover(start, end, query.rollup.intervals_s)
        _, _, finals, late = _collect(store, query, used, lambda g: False)
        usage.add(used, finals, late)
    return usage


def run_facet_query(store: ViewStore, query: FacetQuery) -> dict[str, Any]:
    """The top values of a facet over a range (facet windows are 1h and 1d)."""
    used = cover(query.start, query.end, DEFAULT_FACET_INTERVALS)
    counts: dict[Any, int] = defaultdict(int)
    finals: list[bool] = []
    late = 0
    for window in used.windows:
        values = store.facet_window(query.facet, window.interval_s, window.start)
        finals.append(all(final for _, final in values.values()))
        for value, (count, _) in values.items():
            counts[value] += count
        late_name = f"facet:{query.facet}{LATE_SUFFIX}"
        late += sum(
            e.actions for e in store.rollup_window(late_name, window.interval_s, window.start).values()
        )
    usage = _Usage()
    usage.approximations.extend(query.notes)
    usage.add(used, finals, late)
    note = _widened(used)
    if note:
        usage.approximations.append(note)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], repr(item[0])))
    return {
        "facet": query.facet,
        "from": iso(used.start),
        "to": iso(used.end),
        "from_ms": used.start,
        "to_ms": used.end,
        "unique_values": sum(1 for c in counts.values() if c),
        "total": sum(counts.values()),
        "values": [{"value": v, "count": c} for v, c in ranked[: query.top]],
        **usage.report(),
    }
