"""Keyed records go where every Kafka client puts them: murmur2 of the key, modulo the partitions."""

from __future__ import annotations

import ctypes

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

import pipeline.partitioning as partitioning
from pipeline.partitioning import KeyPartitioner, murmur2

# The Java client's own test vectors (org.apache.kafka.common.utils.UtilsTest), as signed ints.
JAVA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), JAVA_VECTORS)
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert ctypes.c_int32(murmur2(key)).value == expected


@given(st.binary(max_size=300))
def test_murmur2_matches_aiokafka_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_murmur2_covers_every_tail_length() -> None:
    # Keys of 0-3 bytes beyond a multiple of four take different tail steps.
    for length in range(0, 41):
        data = bytes(range(200, 200 + length))
        assert murmur2(data) == aiokafka_murmur2(data), length


@given(st.binary(max_size=80))
def test_murmur2_of_other_bytes_like_objects(data: bytes) -> None:
    assert murmur2(bytearray(data)) == murmur2(memoryview(data)) == aiokafka_murmur2(data)


@given(st.binary(max_size=80))
def test_murmur2_without_native_words(data: bytes) -> None:
    # The way words are read where array("I") is not 4-byte little-endian (big-endian hosts).
    original = partitioning._NATIVE_WORDS
    partitioning._NATIVE_WORDS = False
    try:
        assert murmur2(data) == aiokafka_murmur2(data)
    finally:
        partitioning._NATIVE_WORDS = original


partition_lists = st.lists(st.integers(0, 200), min_size=1, max_size=64, unique=True).map(sorted)


@given(st.lists(st.binary(max_size=120), max_size=30), partition_lists)
def test_placement_equals_kafkas_default(keys: list[bytes], partitions: list[int]) -> None:
    ours, default = KeyPartitioner(keep=8), DefaultPartitioner()
    for key in keys + keys:  # the second round comes from the kept hashes (or after they were dropped)
        assert ours(key, partitions, partitions) == default(key, partitions, partitions)


def test_key_types_other_than_bytes_place_alike() -> None:
    ours = KeyPartitioner()
    partitions = list(range(12))
    key = b'{"rollup":"cart_value_by_country","interval":"1m"}'
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert ours(bytearray(key), partitions, partitions) == expected
    assert ours(memoryview(key), partitions, partitions) == expected
    assert ours(key, partitions, partitions) == expected
    with pytest.raises(TypeError):
        ours(5, partitions, partitions)  # type: ignore[arg-type]  # as aiokafka's: keys are bytes


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    ours = KeyPartitioner()
    placed = {ours(None, list(range(12)), [3, 7]) for _ in range(200)}
    assert placed == {3, 7}
    # None available (a leader election under way): any partition of the topic.
    assert {ours(None, [0, 1, 2], []) for _ in range(200)} <= {0, 1, 2}


def test_hashes_are_kept_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[bytes] = []

    def counting(data: bytes) -> int:
        hashed.append(data)
        return aiokafka_murmur2(data)

    monkeypatch.setattr(partitioning, "murmur2", counting)
    ours = KeyPartitioner(keep=3)
    partitions = list(range(12))
    for key in (b"a", b"b", b"a", b"c", b"b", b"a"):
        ours(key, partitions, partitions)
    assert hashed == [b"a", b"b", b"c"]  # each key hashed once
    ours(b"d", partitions, partitions)  # a fourth key: the kept hashes are dropped first
    ours(b"a", partitions, partitions)
    assert hashed == [b"a", b"b", b"c", b"d", b"a"]
    assert ours(b"a", partitions, partitions) == DefaultPartitioner()(b"a", partitions, partitions)
