"""The records monitors emit, their Kafka keys and the partition of a monitor.

Two record kinds, one schema each in ``schemas/``:

- ``monitor-event.v1``: one per transition or renotification, for ``rum.monitors.events``;
  keyed by the monitor's name. Its ``id`` is derived from what it says, so a
  consumer (or a webhook receiver) can drop a copy of an event it already has.
- ``monitor-state.v1``: the current state of one monitor for one group, an
  upsert for the compacted ``rum.monitors.state``, keyed by monitor and group.
  Reading the topic back gives what :class:`~pipeline.monitors.evaluate.Evaluator`
  restores from.

Every record of one monitor belongs in one partition: :func:`monitor_partition`
is Kafka's placement of the monitor's name, which is the event key, and a state
record is sent to that partition explicitly. Instances of ``serve`` in one
consumer group on the state topic can then each evaluate the monitors of the
partitions they are assigned, and restore exactly those.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from pipeline.monitors.model import Group, Monitor, Status, group_object
from pipeline.partitioning import murmur2

SCHEMA_VERSION = "1"
#: Status -> its plain string (an enum's ``.value`` is a slow property on the per-group path).
_TEXT = {status: str(status.value) for status in Status}


def monitor_partition(name: str, partitions: int) -> int:
    """The partition of monitor ``name``'s records: Kafka's default placement of the key ``name``."""
    return (murmur2(name.encode()) & 0x7FFFFFFF) % partitions


def event_key(monitor: str) -> bytes:
    """Key of a ``rum.monitors.events`` record: the monitor's name."""
    return monitor.encode()


def state_key(monitor: str, group: Group) -> bytes:
    """Key of a ``rum.monitors.state`` record: ``["<monitor>", {<group>}]`` as compact JSON."""
    return orjson.dumps([monitor, group_object(group)])


def event_id(kind: str, monitor: str, group: dict[str, Any], at_ms: int, to: Status) -> str:
    """A stable identifier of an event: the same event evaluated again gets the same id."""
    text = orjson.dumps((kind, monitor, group, at_ms, _TEXT[to]))
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def event_context(monitor: Monitor, window: tuple[int, int]) -> dict[str, Any]:
    """What every event of ``monitor`` in one cycle says alike: window, query, thresholds, message."""
    return {
        "window": {"start": window[0], "end": window[1]},
        "query": monitor.query(),
        "thresholds": monitor.thresholds(),
        "message": monitor.message,
    }


def event_record(
    kind: str,
    monitor: str,
    group: dict[str, Any],
    at_ms: int,
    before: Status,
    after: Status,
    value: float | None,
    since_ms: int,
    context: dict[str, Any],
) -> dict[str, Any]:
    """A ``monitor-event.v1`` record: ``kind`` is ``transition`` or ``renotify`` (``before == after``).

    ``group`` is the group's JSON object; ``context`` comes from :func:`event_context`, and its
    nested objects are shared by the events of one cycle (records are not changed once made).
    """
    record = {
        "schema_version": SCHEMA_VERSION,
        "id": event_id(kind, monitor, group, at_ms, after),
        "kind": kind,
        "monitor": monitor,
        "group": group,
        "at": at_ms,
        "from": _TEXT[before],
        "to": _TEXT[after],
        "since": since_ms,
        "value": value,
    }
    record.update(context)
    return record


def state_record(
    monitor: str,
    group: dict[str, Any],
    status: Status,
    since_ms: int,
    value: float | None,
    evaluated_ms: int,
    last_data_ms: int | None,
    notified_ms: int | None,
) -> dict[str, Any]:
    """A ``monitor-state.v1`` record: one group's state (``group`` its JSON object) as of ``evaluated_ms``."""
    return {
        "schema_version": SCHEMA_VERSION,
        "monitor": monitor,
        "group": group,
        "status": _TEXT[status],
        "since": since_ms,
        "value": value,
        "evaluated_at": evaluated_ms,
        "last_data_at": last_data_ms,
        "notified_at": notified_ms,
    }
