"""Batched aggregation: the queued actions of a partition grouped by partial, in a few passes.

Updating partials one action at a time costs a key, a lookup and an update per
action, rollup, interval and group (about 14 of each per action with the default
rollups and facets). Here each rollup reads an action once: its group values and
its *window id* (``date // unit``, where ``unit`` divides every interval, so that
actions with equal ids share every window) give a coarse bucket; the buckets are
then spread over the rollup's intervals. Each partial is finally updated once,
with the indexes of all its actions.

Late actions (rare: older than the watermark allows for some interval) go
straight to their per-interval partials, including the ``<rollup>:late`` ones.
"""

from __future__ import annotations

from itertools import compress
from math import gcd
from typing import TYPE_CHECKING, Any

from pipeline.query.paths import compile_many, compile_path
from pipeline.rollups.values import PLAIN, scalar
from pipeline.rollups.windows import SECOND_MS

if TYPE_CHECKING:
    from pipeline.rollups.compiled import CompiledRollup, SlotKey


def window_unit(intervals: list[int]) -> int:
    """The largest duration (ms) dividing every interval.

    Actions with equal ``date // unit`` share every window.
    """
    unit = 0
    for interval in intervals:
        unit = gcd(unit, interval * SECOND_MS)
    return unit or SECOND_MS


def rollup_slots(
    rollup: CompiledRollup,
    events: list[dict[str, Any]],
    window_ids: list[int],
    late: list[frozenset[int] | None],
    unit: int,
    late_suffix: str,
    shared: dict[int, tuple[dict[int, list[int]], list[int]]] | None = None,
) -> dict[SlotKey, list[list[int]]]:
    """Every partial of ``rollup`` the events reach, with their indexes (lists, each in offset order).

    ``shared`` caches, per ``unit``, the buckets of rollups without filter or
    ``group_by`` (the facets, and any such configured rollup): they all bucket
    alike, so one pass serves them all, and their buckets are the same lists.
    """
    coarse: dict[tuple[int, Any], list[int]] = {}
    slots: dict[SlotKey, list[list[int]]] = {}
    filtered = not rollup.always
    if not filtered and not rollup.groups and shared is not None:
        found = shared.get(unit)
        if found is None:
            found = shared[unit] = window_buckets(window_ids, late)
        buckets, late_indexes = found
        for index in late_indexes:
            _late_event(rollup, events[index], index, late[index], late_suffix, slots)  # type: ignore[arg-type]
        coarse = {(window, ()): indexes for window, indexes in buckets.items()}
        return _spread(rollup, coarse, unit, None, slots)
    single = rollup.groups[0] if len(rollup.groups) == 1 else None
    # The raw value first: a plain scalar (or null, grouped as None) needs no list of values.
    # Read for every event at once when every event is taken, else for the matching ones.
    raw = compile_many(single[0])(events) if single is not None and not filtered else None
    get = compile_path(single[0]) if single is not None and raw is None else None
    # The filter of every event in one pass (see ``Filter.matches_many``), then the matching ones.
    chosen = compress(range(len(events)), rollup.select(events)) if filtered else range(len(events))
    for index in chosen:
        event = events[index]
        if late[index] is not None:
            _late_event(rollup, event, index, late[index], late_suffix, slots)  # type: ignore[arg-type]
            continue
        window = window_ids[index]
        if single is None:
            for group in rollup.group_keys(event):
                _append(coarse, (window, group), index)
            continue
        value = raw[index] if raw is not None else get(event)  # type: ignore[misc]
        if value.__class__ in PLAIN:
            bucket = coarse.get((window, value))
            if bucket is None:
                coarse[(window, value)] = [index]
            else:
                bucket.append(index)
            continue
        # A list, an object, or a path through a list of objects: every distinct value.
        values = list(dict.fromkeys(map(scalar, single[1](event))))
        if not values:
            values = [None]
        for value in values:
            _append(coarse, (window, value), index)
    return _spread(rollup, coarse, unit, single[0] if single is not None else None, slots)


def _spread(
    rollup: CompiledRollup,
    coarse: dict[tuple[int, Any], list[int]],
    unit: int,
    path: str | None,
    slots: dict[SlotKey, list[list[int]]],
) -> dict[SlotKey, list[list[int]]]:
    """Spread (window id, group) buckets over the partials of the rollup's intervals."""
    name = rollup.name
    sizes = [(interval, interval * SECOND_MS) for interval in rollup.intervals]
    for (window, group), indexes in coarse.items():
        base = window * unit
        key = ((path, group),) if path is not None else group
        for interval, size in sizes:
            slot = (name, interval, base - base % size, key)
            lists = slots.get(slot)
            if lists is None:
                slots[slot] = [indexes]
            else:
                lists.append(indexes)
    return slots


def window_buckets(
    window_ids: list[int], late: list[frozenset[int] | None]
) -> tuple[dict[int, list[int]], list[int]]:
    """The indexes of the on-time events per window id, and the indexes of the late ones."""
    buckets: dict[int, list[int]] = {}
    late_indexes: list[int] = []
    for index, window in enumerate(window_ids):
        if late[index] is not None:
            late_indexes.append(index)
            continue
        bucket = buckets.get(window)
        if bucket is None:
            buckets[window] = [index]
        else:
            bucket.append(index)
    return buckets, late_indexes


def _late_event(
    rollup: CompiledRollup,
    event: dict[str, Any],
    index: int,
    late: frozenset[int],
    late_suffix: str,
    slots: dict[SlotKey, list[list[int]]],
) -> None:
    """Place an action that is late for some intervals: those count it in ``<rollup>:late``."""
    event_ms = event["date"]
    groups = None
    for interval in rollup.intervals:
        size = interval * SECOND_MS
        start = event_ms - event_ms % size
        if interval in late:
            slots.setdefault((rollup.name + late_suffix, interval, start, ()), []).append([index])
            continue
        groups = groups if groups is not None else rollup.group_keys(event)
        for group in groups:
            slots.setdefault((rollup.name, interval, start, group), []).append([index])


def _append(buckets: dict[Any, list[int]], key: Any, index: int) -> None:
    bucket = buckets.get(key)
    if bucket is None:
        buckets[key] = [index]
    else:
        bucket.append(index)


def merged_indexes(lists: list[list[int]]) -> list[int]:
    """The indexes of several buckets as one list in offset (index) order."""
    if len(lists) == 1:
        return lists[0]
    return sorted(i for indexes in lists for i in indexes)
