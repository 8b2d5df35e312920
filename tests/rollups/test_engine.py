"""Stage 1 and stage 2 together, without Kafka: exact results through crashes and replays."""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.generate import TrafficGenerator
from pipeline.process import Processor
from pipeline.rollups.config import default_config_path, load_rollup_config, parse_rollup_config
from pipeline.rollups.engine import META_KEY, RollupEngine
from pipeline.rollups.merge import Merger, partial_record, route
from pipeline.rollups.spill import Spill
from pipeline.rollups.stage import RollupStage
from pipeline.settings import load_settings
from tests.factory import minimal_action
from tests.rollups.fakes import FakeProducer, PlainWriters, restore

HOUR = 3_600_000
T0 = 1_764_331_200_000  # 2025-11-28T12:00:00Z, aligned to the hour and the day
CONFIG = parse_rollup_config(
    """
facets: [geo.country, context.items]
measures: [{path: context.value, unit: EUR}]
rollups:
  - name: cart
    filter: "@action.target.name:checkout"
    measure: context.value
    group_by: [geo.country]
    aggregations: [count, sum, min, max, p50, cardinality(usr.id)]
    intervals: [1h]
grace: 1m
retention: 2d
"""
)
COUNTRIES = ["France", "Germany", "Japan", None]


def make_events(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        # Drawn in a fixed order, so that a seed always gives the same events.
        date = T0 + i * 500 + rng.randrange(0, 2000)
        name = rng.choice(["checkout", "checkout", "search"])
        context = {"value": round(rng.uniform(1, 300), 2), "items": rng.sample(["a", "b", "c", "d"], 2)}
        event = minimal_action(name, date, context=context, usr={"id": f"u{rng.randrange(50)}"})
        country = rng.choice(COUNTRIES)
        if country:
            event["geo"] = {"country": country}
        events.append(event)
    return events


class FakeKafka:
    """The two topics stage 1 writes, as lists, filled by the rollup stage's own flush."""

    def __init__(self) -> None:
        self.changelog: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        self.partials: list[bytes] = []
        self.producer = FakeProducer()
        self.stage = RollupStage(load_settings({}), CONFIG, lambda: self.producer, set)

    def write(self, engine: RollupEngine, partition: int) -> None:
        """What a worker's flush of ``partition`` writes: changelog records, then partials."""
        self.stage.engine = engine  # the stage flushes the engine under test
        asyncio.run(self.stage.flush([partition], PlainWriters(self.producer)))
        for topic, _routed, key, value in self.producer.sent:
            if topic == self.stage.state_topic:
                self.changelog[partition].append((key, value))
            elif value is not None:  # a partial (tombstones only compact the topic)
                self.partials.append(value)
        self.producer.sent.clear()


def run(
    events_by_partition: dict[int, list[dict[str, Any]]],
    crash_seed: int | None,
    spill: Spill | None = None,
    aggregate_at: int = RollupEngine.AGGREGATE_AT,
) -> Merger:
    """Process every partition in batches of 7; with a seed, crash and replay at random points.

    With ``spill``, state beyond its capacity goes to RocksDB after every flush, as in a worker.
    ``aggregate_at`` below 7 aggregates queued actions between flushes too.
    """
    rng = random.Random(crash_seed)
    kafka = FakeKafka()
    engine = RollupEngine(CONFIG, spill, aggregate_at=aggregate_at)
    for partition, events in events_by_partition.items():
        engine.restoring(partition).finish()
        committed = 0  # next offset to read after a restart
        offset = 0
        while offset < len(events):
            batch = events[offset : offset + 7]
            for i, event in enumerate(batch):
                engine.apply(partition, offset + i, event, receive_ms=event["date"] + 1000)
            if crash_seed is not None and rng.random() < 0.3:
                # Crash before the flush, or after it but before the commit: state is
                # rebuilt from the changelog and the partition replayed from `committed`.
                if rng.random() < 0.5:
                    kafka.write(engine, partition)
                    kafka.partials.extend(rng.sample(kafka.partials, min(3, len(kafka.partials))))
                engine.drop(partition)
                restore(engine, partition, kafka.changelog[partition])
                offset = committed
                continue
            kafka.write(engine, partition)
            if spill is not None:
                spill.balance()
            offset += len(batch)
            if rng.random() < 0.5:
                committed = offset
    merger = Merger(CONFIG.grace_seconds, CONFIG.retention_seconds, spill)
    shuffled = list(kafka.partials)
    random.Random(crash_seed).shuffle(shuffled)
    for n, value in enumerate(shuffled):
        merger.offer(value, 0)
        if spill is not None and n % 50 == 0:
            merger.flush(now_ms=0)
            spill.balance()
    return merger


def ground_truth(events: list[dict[str, Any]]) -> dict[tuple[int, Any], list[float]]:
    truth: dict[tuple[int, Any], list[float]] = defaultdict(list)
    for event in events:
        if event["action"]["target"]["name"] == "checkout":
            window = event["date"] // HOUR * HOUR
            truth[(window, event.get("geo", {}).get("country"))].append(event["context"]["value"])
    return truth


@pytest.mark.parametrize("aggregate_at", [3, RollupEngine.AGGREGATE_AT])
@pytest.mark.parametrize("crash_seed", [None, 1, 2, 3, 4, 5])
def test_rollups_are_exact_through_crashes_and_duplicates(crash_seed: int | None, aggregate_at: int) -> None:
    events = make_events(3000, seed=7)
    by_partition = {p: events[p::3] for p in range(3)}
    assert_exact(run(by_partition, crash_seed, aggregate_at=aggregate_at), events)


@pytest.mark.parametrize("aggregate_at", [3, RollupEngine.AGGREGATE_AT])
@pytest.mark.parametrize("crash_seed", [None, 3])
def test_rollups_stay_exact_with_most_state_spilled_to_rocksdb(
    tmp_path: Path, crash_seed: int | None, aggregate_at: int
) -> None:
    events = make_events(3000, seed=7)
    spill = Spill(tmp_path / "spill", capacity=10)
    try:
        merger = run({p: events[p::3] for p in range(3)}, crash_seed, spill, aggregate_at)
        assert_exact(merger, events)
        assert spill.counts["spilled"] > 100 and spill.counts["unspilled"] > 100
    finally:
        spill.close()
    assert not (tmp_path / "spill").exists()


def test_a_restore_keeps_the_state_in_memory_within_the_spill_budget(tmp_path: Path) -> None:
    events = make_events(2000, seed=5)
    for i, event in enumerate(events):  # 20 days of hours: many windows, the oldest evicted
        event["date"] = T0 + i * HOUR // 4
    kafka = FakeKafka()
    first = RollupEngine(CONFIG)
    first.restoring(0).finish()
    for offset, event in enumerate(events):
        first.apply(0, offset, event, receive_ms=event["date"] + 1000)
        if offset % 100 == 99:
            kafka.write(first, 0)
    # Last, a late action: the highest stamp goes to a partial of an old window, which spills first.
    late = {**events[-1], "date": events[-1]["date"] - 30 * HOUR}
    assert first.apply(0, len(events), late, receive_ms=events[-1]["date"])
    kafka.write(first, 0)
    records = kafka.changelog[0]
    assert any(value is None for _, value in records)  # tombstones of evicted windows among them
    plain = restore(RollupEngine(CONFIG), 0, records)
    assert len(plain.partials) > 150  # several times the budget below
    spill = Spill(tmp_path / "spill", capacity=40)
    try:
        engine = RollupEngine(CONFIG, spill)
        peak = 0

        def watched() -> Any:
            nonlocal peak
            for record in records:
                peak = max(peak, spill.in_memory())
                yield record

        state = restore(engine, 0, watched())
        assert spill.counts["spilled"] > 0
        assert peak <= 40 + 40 // 10
        assert state.replay_until == len(events) == max(p.last_offset for p in plain.partials.hot.values())
        assert (state.offset, state.watermark, state.dirty) == (plain.offset, plain.watermark, plain.dirty)
        restored = {slot: state.partials[slot].to_bytes() for slot in state.partials}
        assert restored == {slot: plain.partials[slot].to_bytes() for slot in plain.partials}
    finally:
        spill.close()


def assert_exact(merger: Merger, events: list[dict[str, Any]]) -> None:
    """Every cart rollup of the merger equals ground truth over ``events``."""
    merger.dirty.update(merger.merged)  # everything, not only what changed since the last flush
    upserts = {
        (u.value["window_start"], u.value["group"].get("geo.country")): u.value
        for u in merger.flush(now_ms=0)
        if u.topic == "rollups" and u.value["rollup"] == "cart"
    }
    truth = ground_truth(events)
    assert set(upserts) == set(truth)
    for key, values in truth.items():
        result = upserts[key]["aggregations"]
        assert result["count"] == len(values)
        assert result["min"] == min(values) and result["max"] == max(values)
        assert math.isclose(result["sum"], math.fsum(values), rel_tol=1e-9)
        ordered = sorted(values)
        true_median = ordered[math.ceil(0.5 * len(ordered)) - 1]
        assert abs(result["p50"] - true_median) <= 0.01 * true_median + 1e-9


def test_facets_count_each_list_element_and_distinct_values() -> None:
    events = make_events(600, seed=3)
    merger = run({0: events}, crash_seed=None)
    upserts = merger.flush(now_ms=0)
    counts: dict[tuple[str, int, Any], int] = {}
    unique: dict[tuple[str, int], int] = {}
    for u in upserts:
        if u.topic != "facets" or u.value["interval"] != "1h":
            continue
        if u.value["kind"] == "value":
            counts[(u.value["facet"], u.value["window_start"], u.value["value"])] = u.value["count"]
        else:
            unique[(u.value["facet"], u.value["window_start"])] = u.value["unique_values"]
    expected: dict[tuple[str, int, Any], int] = defaultdict(int)
    for event in events:
        window = event["date"] // HOUR * HOUR
        for item in event["context"]["items"]:
            expected[("context.items", window, item)] += 1
        if "geo" in event:
            expected[("geo.country", window, event["geo"]["country"])] += 1
    assert counts == expected
    for (facet, window), n in unique.items():
        assert n == len({v for (f, w, v) in expected if f == facet and w == window})


def test_late_events_are_counted_apart_and_windows_become_final() -> None:
    engine = RollupEngine(CONFIG)
    engine.restoring(0).finish()
    checkout = {
        "action": {"target": {"name": "checkout"}},
        "context": {"value": 10.0},
        "geo": {"country": "Japan"},
    }
    engine.apply(0, 0, {**checkout, "date": T0 + 10}, receive_ms=T0)
    engine.apply(0, 1, {**checkout, "date": T0 + HOUR + 61_000}, receive_ms=T0)  # watermark past end + grace
    verdicts = engine.apply(0, 2, {**checkout, "date": T0 + 20}, receive_ms=T0)
    assert {(v.kind, v.interval, v.window_start) for v in verdicts} >= {("late", "1h", T0)}
    kafka = FakeKafka()
    kafka.write(engine, 0)
    merger = Merger(CONFIG.grace_seconds, CONFIG.retention_seconds)
    for value in kafka.partials:
        merger.offer(value, 0)
    records = {
        (u.value.get("rollup"), u.value.get("window_start")): u.value
        for u in merger.flush(now_ms=0)
        if u.topic == "rollups"
    }
    assert records[("cart", T0)]["aggregations"]["count"] == 1  # the late one is not in the window
    assert records[("cart", T0)]["final"] is True
    assert records[("cart:late", T0)]["aggregations"]["count"] == 1  # ...but counted, not lost
    assert records[("cart", T0 + HOUR)]["final"] is False


def test_changelog_meta_comes_after_the_partials_and_restores_the_watermark() -> None:
    engine = RollupEngine(CONFIG)
    engine.restoring(4).finish()
    engine.apply(4, 10, {"date": T0, "action": {"target": {"name": "checkout"}}}, receive_ms=T0)
    kafka = FakeKafka()
    kafka.write(engine, 4)
    assert kafka.changelog[4][-1][0] == META_KEY
    assert orjson.loads(kafka.changelog[4][-1][1] or b"null") == {"offset": 10, "watermark": T0}
    restored = RollupEngine(CONFIG)
    state = restore(restored, 4, kafka.changelog[4])
    assert (state.offset, state.watermark) == (10, T0)
    assert restored.apply(4, 10, {"date": T0, "action": {"target": {"name": "checkout"}}}, T0) == []
    assert restored.counts["replayed"] == 1


def test_route_depends_on_the_window_not_the_group() -> None:
    from pipeline.rollups.partials import RollupKey

    a = RollupKey("facet:geo.country", "1h", T0, (("geo.country", "France"),))
    b = RollupKey("facet:geo.country", "1h", T0, (("geo.country", "Japan"),))
    assert route(a, 12) == route(b, 12)


def test_every_upsert_validates_against_its_schema() -> None:
    from pipeline.schemas import FACET_INDEX, MEASURE_ROLLUP, validate_record

    events = make_events(800, seed=5)
    events.append({**events[0], "date": T0 - 5 * HOUR})  # a late one, for the :late rollup
    merger = run({0: events[:400], 1: events[400:]}, crash_seed=9)
    upserts = merger.flush(now_ms=T0)
    assert {u.topic for u in upserts} == {"facets", "rollups"}
    for upsert in upserts:
        schema = FACET_INDEX if upsert.topic == "facets" else MEASURE_ROLLUP
        value = orjson.loads(orjson.dumps(upsert.value))
        assert validate_record(schema, value) == [], value


def test_a_merger_forgets_the_partitions_it_gave_away() -> None:
    events = make_events(300, seed=8)
    kafka = FakeKafka()
    engine = RollupEngine(CONFIG)
    engine.restoring(0).finish()
    for offset, event in enumerate(events):
        engine.apply(0, offset, event, receive_ms=event["date"])
    kafka.write(engine, 0)

    def route_of(value: bytes) -> int:  # facets on partition 0, rollups on partition 1
        return 0 if orjson.loads(value)["partial"]["key"]["rollup"].startswith("facet:") else 1

    merger = Merger(CONFIG.grace_seconds, CONFIG.retention_seconds)
    for value in kafka.partials:
        merger.offer(value, route_of(value))
    assert merger.route_partitions() == {0, 1}
    assert {u.topic for u in merger.flush(now_ms=0)} == {"facets", "rollups"}
    merger.drop(1)  # partition 1 now belongs to another worker
    assert merger.route_partitions() == {0}
    # A later watermark makes every window final: only partition 0's keys may be written.
    facet_partial = next(v for v in kafka.partials if route_of(v) == 0)
    later = {"partial": orjson.loads(facet_partial)["partial"], "watermark": T0 + 100 * HOUR}
    merger.offer(orjson.dumps(later), 0)
    upserts = merger.flush(now_ms=0)
    assert upserts and {u.topic for u in upserts} == {"facets"}
    assert all(u.value["final"] for u in upserts)


def test_partials_of_a_flush_cut_short_are_sent_again_after_a_restore() -> None:
    """Killed between the changelog write and the partials-topic write: the restore resends."""
    engine = RollupEngine(CONFIG)
    engine.restoring(0).finish()
    checkout = {"action": {"target": {"name": "checkout"}}, "context": {"value": 5.0}}
    engine.apply(0, 0, {**checkout, "date": T0}, receive_ms=T0)
    kafka = FakeKafka()
    kafka.write(engine, 0)  # a complete flush: partials, then the meta record
    engine.apply(0, 1, {**checkout, "date": T0 + 1}, receive_ms=T0)
    engine.apply(0, 2, {**checkout, "date": T0 + HOUR}, receive_ms=T0)
    changes, _meta = engine.flush(0)
    # Only the changelog got this flush's partials: no partials-topic copy, no meta record.
    kafka.changelog[0].extend((p.key.encode(), p.to_bytes()) for p, _ in changes)

    restored = RollupEngine(CONFIG)
    restore(restored, 0, kafka.changelog[0])
    assert restored.unflushed(0)
    # The raw partition is replayed from the last meta offset: both actions are in the partials.
    for offset, date in ((1, T0 + 1), (2, T0 + HOUR)):
        restored.apply(0, offset, {**checkout, "date": date}, receive_ms=T0)
    kafka.write(restored, 0)
    assert not restored.unflushed(0)
    merger = Merger(CONFIG.grace_seconds, CONFIG.retention_seconds)
    for value in kafka.partials:
        merger.offer(value, 0)
    counts = {
        u.value["window_start"]: u.value["aggregations"]["count"]
        for u in merger.flush(now_ms=0)
        if u.topic == "rollups" and u.value["rollup"] == "cart"
    }
    assert counts == {T0: 2, T0 + HOUR: 1}


def test_facet_partials_of_the_per_value_format_are_left_out() -> None:
    """Partials from before one-per-window facets (one per value) neither load nor merge."""
    from pipeline.rollups.aggregation_set import AggregationSet
    from pipeline.rollups.partials import Partial, RollupKey

    old_key = RollupKey("facet:geo.country", "1h", T0, (("geo.country", "Japan"),))
    old = Partial(old_key, 0, AggregationSet.of(("count",)), {"count": 3}, 7)
    engine = RollupEngine(CONFIG)
    state = restore(engine, 0, [(old.encoded_key, old.to_bytes())])
    assert len(state.partials) == 0
    merger = Merger(CONFIG.grace_seconds, CONFIG.retention_seconds)
    merger.offer(partial_record(old.encoded_key, old.partition, old.to_bytes(), T0)[1], 0)
    assert merger.flush(now_ms=0) == []


def test_queued_actions_hold_only_what_the_rollups_read() -> None:
    """Queued actions are copies of the attributes the config reads, and aggregate like the actions."""
    config = parse_rollup_config(
        """
facets: [context.items]
measures: [{path: context.value, unit: EUR}]
rollups:
  - name: shop
    filter: "@view.url_host:shop.example OR @context.products.sku:a"
    measure: context.value
    group_by: [geo.country]
    aggregations: [count, sum, p50, cardinality(usr.id)]
    intervals: [1h]
"""
    )
    events = make_events(300, seed=11)
    rng = random.Random(3)
    for event in events:
        event["view"] = {"url_host": rng.choice(["shop.example", "blog.example"]), "url_path": "/cart"}
        event["context"]["products"] = [{"sku": rng.choice("ab"), "name": "tomato"}]
        event["pipeline"] = {"source": {"topic": "raw", "partition": 0}, "warnings": []}
        event["usr"]["name"] = "not read"
        event.setdefault("geo", {})["city"] = "not read"
    engine = RollupEngine(config, aggregate_at=10**6)
    reference = RollupEngine(config, aggregate_at=10**6)
    reference.project = lambda event: event  # type: ignore[method-assign,assignment]
    for one in (engine, reference):
        one.restoring(0).finish()
        for offset, event in enumerate(events):
            assert one.apply(0, offset, event, event["date"]) == []

    queued = engine.partitions[0].pending[0][1]
    first = events[0]
    assert queued == {
        "date": first["date"],
        "view": {"url_host": first["view"]["url_host"]},
        "context": {
            "products": first["context"]["products"],
            "value": first["context"]["value"],
            "items": first["context"]["items"],
        },
        "usr": {"id": first["usr"]["id"]},
        "geo": {"country": first["geo"]["country"]} if "country" in first["geo"] else {},
    }

    def flushed(one: RollupEngine) -> dict[bytes, bytes]:
        one.aggregate(0)
        changes, _ = one.flush(0)
        return {partial.key.encode(): partial.to_bytes() for partial, _ in changes}

    assert flushed(engine) == flushed(reference)
    partials = engine.partitions[0].partials
    shop = [partials[slot] for slot in partials if slot[0] == "shop"]
    selected = [
        e
        for e in events
        if e["view"]["url_host"] == "shop.example" or e["context"]["products"][0]["sku"] == "a"
    ]
    assert 0 < len(selected) < len(events)
    assert sum(p.state["count"] for p in shop) == len(selected)


def test_the_default_config_aggregates_generated_traffic_like_the_whole_actions() -> None:
    """Enriched generated actions, the default rollups and facets: copies and whole actions alike."""
    start = T0 - HOUR
    processor = Processor(load_settings({}))
    events = [
        out.event
        for message in TrafficGenerator(seed=8, start_ms=start, span_ms=HOUR).messages(2_000)
        if (out := processor.process(message.value, received_at=T0)).event is not None
    ]
    config = load_rollup_config(default_config_path())
    engine = RollupEngine(config)
    reference = RollupEngine(config)
    reference.project = lambda event: event  # type: ignore[method-assign,assignment]
    partials = []
    for one in (engine, reference):
        one.restoring(0).finish()
        verdicts = [one.apply(0, offset, event, T0) for offset, event in enumerate(events)]
        one.aggregate(0)
        changes, meta = one.flush(0)
        partials.append((verdicts, {p.key.encode(): p.to_bytes() for p, _ in changes}, meta))
    assert partials[0] == partials[1]
    assert len(partials[0][1]) > 100  # every rollup, facet and interval had something to aggregate
    assert len(engine.partitions[0].partials) == len(partials[0][1])
