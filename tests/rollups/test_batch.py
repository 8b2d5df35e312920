"""Batched aggregation and lazy merging give exactly what one update per action gives."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.batch import window_unit
from pipeline.rollups.config import parse_rollup_config
from pipeline.rollups.engine import RollupEngine
from pipeline.rollups.merge import partial_record
from pipeline.rollups.partials import MergedRollup, Partial, RollupKey
from pipeline.rollups.sketches import CardinalitySketch
from tests.rollups.fakes import restore

MINUTE = 60_000
T0 = 1_764_331_200_000  # 2025-11-28T12:00:00Z
CONFIG = parse_rollup_config(
    """
facets: [geo.country, context.items, action.target.name]
measures: [{path: context.value}]
rollups:
  - {name: cart, filter: "@action.target.name:checkout", measure: context.value, group_by: [geo.country],
     aggregations: [count, sum, avg, min, max, p50, p99, cardinality(usr.id)], intervals: [1m, 1h, 1d]}
  - name: by_name_and_item
    group_by: [action.target.name, context.items]
    aggregations: [count, cardinality(usr.id)]
    intervals: [30s, 1h]
  - name: everything
    aggregations: [count]
    intervals: [1h]
  - {name: by_country, group_by: [geo.country], aggregations: [count, cardinality(usr.id)],
     intervals: [30s, 1h]}
  - {name: by_item, group_by: [context.items], aggregations: [count], intervals: [1h]}
  - {name: filtered, filter: "-@geo.country:France (@context.items:a OR @context.value:>0 OR NOT @usr.id:*)",
     group_by: [geo.country], aggregations: [count], intervals: [1h]}
grace: 1m
retention: 2d
"""
)

event_strategy = st.fixed_dictionaries(
    {
        "date": st.integers(min_value=T0, max_value=T0 + 90 * MINUTE),
        "name": st.sampled_from(["checkout", "search", "view"]),
        "country": st.sampled_from(["France", "Japan", None, 7, True]),
        "items": st.lists(st.sampled_from(["a", "b", "c", 1, 1.5, {"x": 1}]), max_size=3),
        "value": st.one_of(st.none(), st.floats(-1e6, 1e6), st.integers(-5, 5), st.just("12")),
        "user": st.one_of(
            st.none(), st.sampled_from(["u1", "u2", "u3"]), st.lists(st.sampled_from(["u4", "u5"]))
        ),
    }
)


def to_event(raw: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = {
        "date": raw["date"],
        "action": {"target": {"name": raw["name"]}},
        "context": {"items": raw["items"], "value": raw["value"]},
        "usr": {"id": raw["user"], "name": "not read"},
        "view": {"url": "https://shop.example/cart"},
    }
    if raw["country"] is not None:
        event["geo"] = {"country": raw["country"], "city": "not read"}
    return event


def whole_actions_engine() -> RollupEngine:
    """An engine that queues the actions themselves instead of copies of what it reads."""
    engine = RollupEngine(CONFIG)
    engine.project = lambda event: event  # type: ignore[method-assign,assignment]
    return engine


def describe(partial: Partial, evicted: bool = False) -> tuple[Any, ...]:
    """A partial in a form that compares equal when the aggregates are equal."""
    state = partial.aggregations.dump(partial.state)
    hll = state.pop("hll", {})
    estimates = {attr: CardinalitySketch.from_base64(b64).estimate() for attr, b64 in hll.items()}
    return (evicted, partial.last_offset, state, estimates)


def outcome(engine: RollupEngine, partition: int) -> dict[bytes, tuple[Any, ...]]:
    """What a flush writes."""
    changes, _meta = engine.flush(partition)
    return {partial.encoded_key: describe(partial, evicted) for partial, evicted in changes}


def run(
    events: list[dict[str, Any]],
    flush_every: int,
    one_by_one: bool,
    aggregate_at: int = 1000,
    engine: RollupEngine | None = None,
) -> list[dict[bytes, Any]]:
    engine = engine if engine is not None else RollupEngine(CONFIG, aggregate_at=aggregate_at)
    engine.restoring(0).finish()
    flushes = []
    for offset, event in enumerate(events):
        if one_by_one:  # every queued action goes through the per-action path
            engine.partitions[0].replay_until = 1 << 62
        engine.apply(0, offset, event, receive_ms=T0 + 100 * MINUTE)
        if offset % flush_every == flush_every - 1:
            flushes.append(outcome(engine, 0))
    flushes.append(outcome(engine, 0))
    return flushes


@settings(max_examples=60, deadline=None)
@given(
    st.lists(event_strategy, min_size=1, max_size=60),
    st.integers(min_value=1, max_value=25),
    st.integers(min_value=1, max_value=30),
)
def test_batched_aggregation_equals_one_update_per_action(
    raw: list[dict[str, Any]], flush_every: int, aggregate_at: int
) -> None:
    # Unsorted dates: some actions are late for the 30s/1m windows and land in the :late rollups.
    # Queued actions are aggregated every ``aggregate_at`` actions too, between the flushes.
    events = [to_event(r) for r in raw]
    batched = run(events, flush_every, one_by_one=False, aggregate_at=aggregate_at)
    assert batched == run(events, flush_every, one_by_one=True)
    # Queued as copies of the attributes the config reads, they aggregate like the whole actions.
    assert batched == run(events, flush_every, one_by_one=True, engine=whole_actions_engine())


def test_restored_partials_skip_what_they_hold_then_batch() -> None:
    rng = random.Random(4)
    events = [
        {
            "date": T0 + i * 1000,
            "action": {"target": {"name": rng.choice(["checkout", "view"])}},
            "context": {"value": float(i), "items": ["a"]},
            "usr": {"id": f"u{i % 9}"},
            "geo": {"country": rng.choice(["France", "Japan"])},
        }
        for i in range(400)
    ]
    clean = RollupEngine(CONFIG)
    clean.restoring(0).finish()
    for offset, event in enumerate(events):
        clean.apply(0, offset, event, receive_ms=T0)
    expected = outcome(clean, 0)
    # A first owner flushes its partials after 300 actions but crashes before the meta record:
    # the next owner restores them with meta offset -1 and replays everything.
    first = RollupEngine(CONFIG)
    first.restoring(0).finish()
    for offset, event in enumerate(events[:300]):
        first.apply(0, offset, event, receive_ms=T0)
    changes, _meta = first.flush(0)
    changelog = [(p.encoded_key, p.to_bytes()) for p, _ in changes]
    second = RollupEngine(CONFIG)
    assert restore(second, 0, changelog).replay_until == 299
    for offset, event in enumerate(events):
        second.apply(0, offset, event, receive_ms=T0)
    # Partials the replay did not change stay as restored (and are not written again).
    final = {key: describe(Partial.from_bytes(value)) for key, value in changelog}
    final.update(outcome(second, 0))
    assert final == expected
    assert second.partitions[0].replay_until == -1


def test_window_unit_divides_every_interval() -> None:
    assert window_unit([60, 3600, 86400]) == 60_000
    assert window_unit([30, 3600]) == 30_000
    assert window_unit([45 * 60, 3600]) == 15 * 60_000
    assert window_unit([]) == 1000


# --- the merge side -------------------------------------------------------------

AGGS = AggregationSet.of(("count", "sum", "min", "max", "p50", "p95", "cardinality(usr.id)"))
KEY = RollupKey("cart", "1h", T0, (("geo.country", "France"),))

partial_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),  # source partition
        st.lists(st.tuples(st.floats(0.5, 1e4), st.sampled_from([f"u{i}" for i in range(40)])), max_size=30),
    ),
    min_size=1,
    max_size=25,
)


def emitted(spec: list[tuple[int, list[tuple[float, str]]]]) -> list[Partial]:
    partials: dict[int, Partial] = {}
    out = []
    for offset, (partition, values) in enumerate(spec):
        partial = partials.setdefault(partition, Partial(KEY, partition, AGGS))
        for i, (value, user) in enumerate(values):
            partial.apply(offset * 100 + i, value, {"usr": {"id": user}})
        partial.last_offset = max(partial.last_offset, offset * 100)
        out.append(Partial.from_bytes(partial.to_bytes()))
    return out


@settings(max_examples=60, deadline=None)
@given(partial_strategy, st.randoms(use_true_random=False))
def test_lazy_merge_equals_full_recomputation(spec: list[Any], rnd: random.Random) -> None:
    sent = emitted(spec)
    messy = sent + [rnd.choice(sent) for _ in range(len(sent) // 2)]
    rnd.shuffle(messy)
    lazy = MergedRollup(KEY, AGGS)
    for partial in messy:
        lazy.offer_dict(orjson.loads(partial.to_bytes()))
    # The reference: the latest partial per partition, merged pairwise in partition order.
    latest: dict[int, Partial] = {}
    for partial in messy:
        if partial.partition not in latest or partial.last_offset > latest[partial.partition].last_offset:
            latest[partial.partition] = partial
    reference = AGGS.initialize()
    for partition in sorted(latest):
        AGGS.merge(reference, latest[partition].state)
    assert lazy.offsets() == {p: latest[p].last_offset for p in sorted(latest)}
    state = lazy.state()
    assert AGGS.result(state) == AGGS.result(reference)
    # Same sketches too (an HLL image may list the same coupons in another order).
    got, want = AGGS.dump(state), AGGS.dump(reference)
    got_hll, want_hll = got.pop("hll")["usr.id"], want.pop("hll")["usr.id"]
    assert got == want
    assert (
        CardinalitySketch.from_base64(got_hll).estimate()
        == CardinalitySketch.from_base64(want_hll).estimate()
    )


def test_offer_dict_rejects_other_aggregations_when_read() -> None:
    merged = MergedRollup(KEY, AGGS)
    other = Partial(KEY, 0, AggregationSet.of(("count",)))
    other.apply(3, None, {})
    assert merged.offer_dict(other.to_dict()) is True
    try:
        merged.state()
    except ValueError as exc:
        assert "cart" in str(exc)
    else:
        raise AssertionError("a partial with other aggregations was merged")


def test_partial_record_wraps_the_encoded_partial() -> None:
    partial = Partial(KEY, 7, AGGS)
    partial.apply(12, 3.5, {"usr": {"id": "u1"}})
    for watermark in (None, T0 + 5):
        key, value = partial_record(partial.encoded_key, 7, partial.to_bytes(), watermark)
        assert key == KEY.encode() + b"@7"
        assert orjson.loads(value) == {"partial": partial.to_dict(), "watermark": watermark}


def test_union_of_equals_pairwise_merges() -> None:
    rng = random.Random(9)
    sketches = []
    for size in (0, 3, 200, 5000):
        sketch = CardinalitySketch()
        for _ in range(size):
            sketch.add(f"u{rng.randrange(20000)}")
        sketches.append(sketch)
    pairwise = CardinalitySketch()
    for sketch in sketches:
        pairwise.merge(sketch)
    assert CardinalitySketch.union_of(sketches).to_bytes() == pairwise.to_bytes()
    assert CardinalitySketch.union_of([]).is_empty()


def test_to_bytes_is_the_encoding_of_to_dict() -> None:
    full = Partial(RollupKey("cart", "1h", T0, (("geo.country", "Côte d'Ivoire"),)), 3, AGGS)
    full.apply(41, 12.5, {"usr": {"id": "u1"}})
    counts = Partial(RollupKey("facet:geo.country", "1d", T0 - T0 % 86_400_000, (("geo.country", None),)), 0,
                     AggregationSet.of(("count",)))  # fmt: skip
    for offset in (5, 9):
        counts.apply(offset, None, {})
    counts.mark_emitted()
    for partial in (full, counts, Partial(KEY, 11, AGGS)):
        assert partial.to_bytes() == orjson.dumps(partial.to_dict())
        assert Partial.from_bytes(partial.to_bytes()).to_dict() == partial.to_dict()


@pytest.mark.parametrize("batched", ["measure_many", "matches_many"])
def test_a_rollup_compiled_without_a_batched_form_reads_each_action(batched: str) -> None:
    # Without its batched measure or filter, a rollup reads each action's: the same flushes.
    events = [
        to_event(
            {
                "date": T0 + i * 7_000,
                "name": ["checkout", "search"][i % 2],
                "country": ["Japan", "France", None][i % 3],
                "items": [["a"], [], ["b", "a"]][i % 3],
                "value": i * 1.5 - 20,
                "user": None if i % 5 == 0 else f"u{i % 4}",
            }
        )
        for i in range(60)
    ]
    expected = run(events, 10, one_by_one=False)
    engine = RollupEngine(CONFIG)
    engine.rollups = [dataclasses.replace(rollup, **{batched: None}) for rollup in engine.rollups]
    flushes = run(events, 10, one_by_one=False, engine=engine)
    assert flushes == expected
    assert any(b"filtered" in key for flush in flushes for key in flush)
    # and the filters do select: the day's cart partials count the checkouts alone
    last = {key: described for flush in flushes for key, described in flush.items()}
    day = [d for k, d in last.items() if k.startswith(b'{"rollup":"cart","interval":"1d"')]
    checkouts = sum(1 for e in events if e["action"]["target"]["name"] == "checkout")
    assert day and sum(state["count"] for _, _, state, _ in day) == checkouts < len(events)
