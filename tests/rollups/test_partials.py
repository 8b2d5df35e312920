"""Partials and their merge: replays, duplicated and stale emissions change nothing."""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.partials import MergedRollup, Partial, RollupKey

CHECKOUT = ("count", "sum", "avg", "min", "max", "p50", "p75", "p90", "p95", "p99", "cardinality(usr.id)")
AGGS = AggregationSet.of(CHECKOUT)
KEY = RollupKey("cart_value_by_country", "1h", 1_764_338_400_000, (("geo.country", "France"),))


def event(value: Any, user: str) -> dict[str, Any]:
    return {"usr": {"id": user}, "context": {"value": value}, "geo": {"country": "France"}}


def feed(partial: Partial, events: list[tuple[int, dict[str, Any]]]) -> int:
    applied = 0
    for offset, ev in events:
        applied += partial.apply(offset, ev["context"]["value"], ev)
    return applied


def numbered(events: list[dict[str, Any]], start: int = 0) -> list[tuple[int, dict[str, Any]]]:
    return list(enumerate(events, start))


# --- RollupKey ---------------------------------------------------------------


def test_key_round_trip_and_encoding() -> None:
    data = KEY.to_dict()
    assert data == {
        "rollup": "cart_value_by_country",
        "interval": "1h",
        "window_start": 1_764_338_400_000,
        "group": {"geo.country": "France"},
    }
    assert RollupKey.from_dict(orjson.loads(orjson.dumps(data))) == KEY
    assert KEY.window_end == 1_764_338_400_000 + 3_600_000
    assert KEY.encode() == RollupKey.from_dict(data).encode()


@pytest.mark.parametrize(
    ("interval", "start", "group"),
    [("1h", 1_764_338_400_001, ()), ("7m", 0, ()), ("1h", 0, (("items", ["a"]),))],
)
def test_key_rejects(interval: str, start: int, group: tuple[tuple[str, Any], ...]) -> None:
    with pytest.raises(ValueError):
        RollupKey("r", interval, start, group)


# --- Partial -----------------------------------------------------------------


def test_apply_skips_replayed_offsets() -> None:
    partial = Partial(KEY, 3, AGGS)
    events = numbered([event(10.0, "a"), event(20.0, "b"), event(None, "c")], start=100)
    assert feed(partial, events) == 3
    assert partial.last_offset == 102
    snapshot = partial.to_dict()
    assert feed(partial, events) == 0  # the whole batch again
    assert feed(partial, events[:2]) == 0
    assert partial.to_dict() == snapshot
    assert partial.apply(103, 5.0, event(5.0, "d")) is True
    assert AGGS.result(partial.state)["count"] == 4


def test_emitted_offset_tracking() -> None:
    partial = Partial(KEY, 0, AGGS)
    assert partial.emitted_offset == partial.last_offset == -1
    partial.apply(0, 1.0, event(1.0, "a"))
    assert (partial.last_offset, partial.emitted_offset) == (0, -1)
    partial.mark_emitted()
    assert partial.emitted_offset == 0
    restored = Partial.from_dict(partial.to_dict())
    assert (restored.last_offset, restored.emitted_offset) == (0, 0)
    partial.apply(0, 1.0, event(1.0, "a"))  # a replay changes nothing
    assert (partial.last_offset, partial.emitted_offset) == (0, 0)


def test_partial_round_trip() -> None:
    partial = Partial(KEY, 5, AGGS)
    feed(partial, numbered([event(v, f"u{v % 7}") for v in range(50)]))
    data = orjson.loads(partial.to_bytes())
    assert data["partition"] == 5 and data["last_offset"] == 49
    assert data["aggregations"] == list(CHECKOUT)
    restored = Partial.from_bytes(partial.to_bytes())
    assert restored.key == KEY and restored.aggregations is AGGS
    assert restored.to_dict() == partial.to_dict()
    assert AGGS.result(restored.state) == AGGS.result(partial.state)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0.01, max_value=1e4), min_size=1, max_size=60),
    st.data(),
)
def test_crash_and_replay_equals_uninterrupted(values: list[float], data: st.DataObject) -> None:
    events = numbered([event(v, f"u{i % 5}") for i, v in enumerate(values)])
    n = len(events)
    clean = Partial(KEY, 0, AGGS)
    feed(clean, events)
    # The table state reached its changelog after `checkpoint` events; the source
    # offset commit is at or before it, so the restarted worker re-reads from `commit`.
    checkpoint = data.draw(st.integers(min_value=0, max_value=n), label="checkpoint")
    commit = data.draw(st.integers(min_value=0, max_value=checkpoint), label="commit")
    crashed = Partial(KEY, 0, AGGS)
    feed(crashed, events[:checkpoint])
    restored = Partial.from_dict(orjson.loads(orjson.dumps(crashed.to_dict())))
    feed(restored, events[commit:])
    assert restored.to_dict()["state"] == clean.to_dict()["state"]
    assert restored.last_offset == clean.last_offset


# --- MergedRollup --------------------------------------------------------------


def emissions(
    n_partitions: int, values: list[tuple[int, float | None, str]], emit_every: int
) -> list[Partial]:
    """Run each partition's events, emitting a serialized partial every `emit_every` events and at the end."""
    partials = {p: Partial(KEY, p, AGGS) for p in range(n_partitions)}
    out: list[Partial] = []
    for i, (partition, value, user) in enumerate(values):
        partial = partials[partition]
        partial.apply(partial.last_offset + 1 + i % 3, value, event(value, user))  # offsets with gaps
        if i % emit_every == 0:
            out.append(Partial.from_bytes(partial.to_bytes()))
    out.extend(Partial.from_bytes(p.to_bytes()) for p in partials.values() if p.last_offset >= 0)
    return out


def merged_record(partials: list[Partial]) -> dict[str, Any]:
    merged = MergedRollup(KEY, AGGS)
    for partial in partials:
        merged.offer(partial)
    return merged.record(updated_at_ms=1, final=False)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),
            st.one_of(st.none(), st.floats(min_value=0.01, max_value=1e5)),
            st.sampled_from(["u1", "u2", "u3", "u4"]),
        ),
        min_size=1,
        max_size=80,
    ),
    st.integers(min_value=1, max_value=7),
    st.randoms(use_true_random=False),
)
def test_duplicated_reordered_stale_partials_change_nothing(
    values: list[tuple[int, float | None, str]], emit_every: int, rnd: random.Random
) -> None:
    sent = emissions(4, values, emit_every)
    latest: dict[int, Partial] = {}
    for partial in sent:  # the clean sequence: each partition's final emission
        latest[partial.partition] = partial
    clean = merged_record(list(latest.values()))
    # At-least-once delivery: duplicate some, then deliver everything in any order.
    messy = sent + [rnd.choice(sent) for _ in range(rnd.randrange(len(sent) + 1))]
    rnd.shuffle(messy)
    assert merged_record([Partial.from_bytes(p.to_bytes()) for p in messy]) == clean
    # A merged rollup restored from its own table mid-way ends the same.
    half = len(messy) // 2
    first = MergedRollup(KEY, AGGS)
    for partial in messy[:half]:
        first.offer(partial)
    second = MergedRollup.from_dict(orjson.loads(orjson.dumps(first.to_dict())))
    for partial in messy[half:]:
        second.offer(partial)
    assert second.record(updated_at_ms=1, final=False) == clean


def test_offer_keeps_latest_per_partition() -> None:
    merged = MergedRollup(KEY, AGGS)
    partial = Partial(KEY, 1, AGGS)
    partial.apply(10, 1.0, event(1.0, "a"))
    old = Partial.from_dict(partial.to_dict())
    partial.apply(11, 2.0, event(2.0, "b"))
    new = Partial.from_dict(partial.to_dict())
    assert merged.offer(new) is True
    assert merged.offer(old) is False  # stale
    assert merged.offer(Partial.from_dict(new.to_dict())) is False  # duplicate
    assert merged.offsets() == {1: 11}
    assert merged.record(updated_at_ms=5, final=True)["aggregations"]["count"] == 2


def test_offer_rejects_other_keys_and_aggregations() -> None:
    merged = MergedRollup(KEY, AGGS)
    other_key = RollupKey("cart_value_by_country", "1h", KEY.window_start, (("geo.country", "Spain"),))
    with pytest.raises(ValueError):
        merged.offer(Partial(other_key, 0, AGGS))
    with pytest.raises(ValueError):
        merged.offer(Partial(KEY, 0, AggregationSet.of(("count",))))


def test_record_shape() -> None:
    merged = MergedRollup(KEY, AGGS)
    partial = Partial(KEY, 0, AGGS)
    partial.apply(0, 42.12, event(42.12, "u-7"))
    merged.offer(partial)
    record = merged.record(updated_at_ms=1_764_340_000_000, final=False)
    assert set(record) == {
        "rollup", "interval", "window_start", "window_end", "group",
        "aggregations", "sketches", "final", "updated_at",
    }  # fmt: skip
    assert record["group"] == {"geo.country": "France"}
    assert record["window_end"] - record["window_start"] == 3_600_000
    assert record["aggregations"]["avg"] == 42.12 and record["aggregations"]["cardinality(usr.id)"] == 1
    assert set(record["sketches"]) == {"ddsketch", "hll"}
    orjson.dumps(record)  # JSON-encodable as is
    empty = MergedRollup(KEY, AGGS).record(updated_at_ms=0, final=True)
    assert empty["aggregations"]["count"] == 0 and empty["final"] is True


def test_split_partitions_equal_one_pass() -> None:
    rng = random.Random(2026)
    n = 30_000
    stream = [(rng.lognormvariate(3.5, 1.0), f"user-{rng.randrange(8_000)}") for _ in range(n)]
    single = Partial(KEY, 0, AGGS)
    partitions = {p: Partial(KEY, p, AGGS) for p in range(12)}
    for offset, (value, user) in enumerate(stream):
        single.apply(offset, value, event(value, user))
        partitions[int(user.split("-")[1]) % 12].apply(offset, value, event(value, user))
    merged = MergedRollup(KEY, AGGS)
    for partial in partitions.values():
        merged.offer(Partial.from_dict(partial.to_dict()))
    got = merged.record(updated_at_ms=0, final=True)["aggregations"]
    one = AGGS.result(single.state)
    values = sorted(v for v, _ in stream)
    assert got["count"] == one["count"] == n
    assert got["min"] == values[0] and got["max"] == values[-1]
    assert got["sum"] == pytest.approx(math.fsum(values), rel=1e-9)
    assert got["avg"] == pytest.approx(math.fsum(values) / n, rel=1e-9)
    for name in ("p50", "p75", "p90", "p95", "p99"):
        truth = values[math.floor(float(name[1:]) / 100 * (n - 1))]
        assert abs(got[name] - truth) <= 0.01 * truth, name
        assert got[name] == one[name]
    distinct = len({u for _, u in stream})
    bound = AGGS.aggregations[-1].initialize().relative_error(3) * distinct
    assert abs(got["cardinality(usr.id)"] - distinct) <= bound
    assert abs(one["cardinality(usr.id)"] - distinct) <= bound
