"""Which producer writes a partition's outputs: a new one under each consumer generation."""

from __future__ import annotations

from pipeline.outputs import Outputs, PartitionWriters, transactional_id
from pipeline.settings import load_settings


def test_transactional_ids_are_the_same_for_every_worker_of_a_group() -> None:
    settings = load_settings({"RUM_APP_ID": "shop", "RUM_TOPIC_PREFIX": "p."})
    assert transactional_id(settings, "p.rum.actions.raw", 7) == "shop.p.rum.actions.raw.7"
    other = load_settings({"RUM_APP_ID": "other"})
    assert transactional_id(other, "rum.actions.raw", 7) != transactional_id(settings, "rum.actions.raw", 7)


def test_a_partition_seen_under_a_new_generation_needs_a_new_producer() -> None:
    writers = PartitionWriters(load_settings({}), "raw", "group")
    writers._producers = {1: object(), 2: object()}  # type: ignore[dict-item]
    writers._generations = {1: 4, 2: None}
    assert not writers.stale([(1, 4), (2, 9), (3, 1)])  # same generation, unknown one, no producer
    assert writers.stale([(1, 5)])
    assert not writers.stale([(1, None)])


def test_at_least_once_never_asks_for_new_producers() -> None:
    writers = PartitionWriters(load_settings({"RUM_PROCESSING_GUARANTEE": "at_least_once"}), "raw", "g")
    assert not writers.exactly_once
    assert not writers.stale([(1, 5)])


def test_outputs_know_when_they_hold_nothing() -> None:
    outputs = Outputs()
    assert not outputs
    outputs.add_keyed("bad", None, b"x")
    assert outputs
