"""The state board: latest state per key, recent events per partition, caught up from the topics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.monitors.board import RECENT, StateBoard
from pipeline.monitors.model import Status
from pipeline.monitors.records import event_key, event_record, state_key, state_record
from pipeline.produce import make_producer
from pipeline.settings import Settings, load_settings
from pipeline.topics import MONITOR_EVENTS, MONITOR_STATE
from tests.kafka_helpers import isolated_env, new_topic, settings_from

T = 1_765_100_000_000
FRANCE = (("geo.country", "France"),)
SPAIN = (("geo.country", "Spain"),)


def state(group: tuple[tuple[str, str], ...], status: Status, evaluated: int, monitor: str = "cart") -> bytes:
    return orjson.dumps(state_record(monitor, dict(group), status, T, 1.0, evaluated, evaluated, None))


def event(at: int, monitor: str = "cart") -> bytes:
    return orjson.dumps(event_record("transition", monitor, {}, at, Status.OK, Status.ALERT, 2.0, at, {}))


def test_the_latest_state_per_key_wins_and_a_tombstone_removes_it() -> None:
    board = StateBoard(load_settings({}))
    board.apply(board.state_topic, 0, state_key("cart", FRANCE), state(FRANCE, Status.OK, T))
    board.apply(board.state_topic, 0, state_key("cart", FRANCE), state(FRANCE, Status.ALERT, T + 5))
    board.apply(board.state_topic, 1, state_key("cart", SPAIN), state(SPAIN, Status.WARN, T + 1))
    board.apply(board.state_topic, 2, state_key("other", ()), state((), Status.OK, T, monitor="other"))
    assert [r["status"] for r in board.monitor_states("cart")] == ["ALERT", "WARN"]
    assert board.evaluated_at == T + 5
    board.apply(board.state_topic, 0, state_key("cart", FRANCE), None)
    assert [r["group"] for r in board.monitor_states("cart")] == [{"geo.country": "Spain"}]
    board.apply(board.state_topic, 0, None, state(FRANCE, Status.OK, T + 9))  # keyless: not a state
    assert len(board.states) == 2 and board.evaluated_at == T + 5


def test_an_older_record_does_not_move_evaluated_at_back() -> None:
    board = StateBoard(load_settings({}))
    board.apply(board.events_topic, 0, event_key("cart"), event(T + 10))
    board.apply(board.state_topic, 0, state_key("cart", FRANCE), state(FRANCE, Status.OK, T))
    assert board.evaluated_at == T + 10


def test_events_keep_the_recent_ones_per_partition_newest_first() -> None:
    board = StateBoard(load_settings({}))
    for i in range(RECENT + 10):
        board.apply(board.events_topic, 0, event_key("cart"), event(T + 2 * i))
    board.apply(board.events_topic, 1, event_key("cart"), event(T + 1))  # old, but alone in its partition
    board.apply(board.events_topic, 1, event_key("cart"), None)  # a tombstone is no event
    kept = board.events(limit=1000)
    assert len(kept) == RECENT + 1
    assert [e["at"] for e in kept] == sorted((e["at"] for e in kept), reverse=True)
    assert min(e["at"] for e in kept) == T + 1  # partition 1's only event survives partition 0's flood
    assert [e["at"] for e in board.events(limit=2)] == [T + 2 * (RECENT + 9), T + 2 * (RECENT + 8)]


async def _fill(settings: Settings, records: list[tuple[str, int, bytes, bytes | None]]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for topic, partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def _read(settings: Settings) -> tuple[dict[bytes, dict[str, Any]], list[dict[str, Any]]]:
    board = StateBoard(settings)
    await board.start()
    try:
        await asyncio.wait_for(board.caught_up.wait(), 60)
        return dict(board.states), board.events(limit=1000)
    finally:
        await board.stop()


@pytest.mark.kafka
def test_the_board_reads_both_topics_and_skips_a_foreign_record(tmp_path: Path) -> None:
    settings = settings_from(isolated_env(tmp_path))
    states = asyncio.run(new_topic(settings, MONITOR_STATE, partitions=2))
    events = asyncio.run(new_topic(settings, MONITOR_EVENTS, partitions=2))
    records: list[tuple[str, int, bytes, bytes | None]] = [
        (states, 0, state_key("cart", FRANCE), state(FRANCE, Status.OK, T)),
        (states, 0, state_key("cart", FRANCE), state(FRANCE, Status.ALERT, T + 1)),
        (states, 1, state_key("cart", SPAIN), state(SPAIN, Status.WARN, T)),
        (states, 1, state_key("cart", SPAIN), None),
        (states, 1, b"foreign", b"not json"),  # skipped with a warning, reading goes on
        *((events, 0, event_key("cart"), event(T + i)) for i in range(RECENT + 5)),
        (events, 1, event_key("cart"), event(T - 1)),
    ]
    asyncio.run(_fill(settings, records))
    found, recent = asyncio.run(_read(settings))
    assert found == {state_key("cart", FRANCE): orjson.loads(state(FRANCE, Status.ALERT, T + 1))}
    # The board starts RECENT records before each events partition's end.
    assert len(recent) == RECENT + 1
    assert recent[0]["at"] == T + RECENT + 4 and recent[-1]["at"] == T - 1
