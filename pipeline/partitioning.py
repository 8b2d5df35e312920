"""Which partition a keyed record goes to: Kafka's default placement, computed faster.

Every Kafka client places a keyed record by the 32-bit MurmurHash2 of its key
(``murmur2(key) & 0x7fffffff`` modulo the partition count), so that a key stays
in one partition, which compacted topics and per-key ordering rely on. aiokafka
computes the hash byte by byte in Python on every send. ``murmur2`` here reads
the key four bytes at a time and gives the same hash in about half the time, and
``KeyPartitioner`` keeps the hashes of keys it met (measured in
docs/decisions/0007-own-key-partitioner.md, with ``bench/placement.py``): the
merge stage upserts the same window keys at every flush, and the intake sends
the actions of a session under one key.

The placement must stay exactly Kafka's: a key placed elsewhere than before
would leave its older records in another partition of a compacted topic.
"""

from __future__ import annotations

import random
import sys
from array import array
from collections.abc import Sequence

_MASK = 0xFFFFFFFF
_M = 0x5BD1E995
_SEED = 0x9747B28C
#: Where ``array("I")`` holds 4-byte little-endian words (x86, ARM): the fast way to read them.
_NATIVE_WORDS = array("I").itemsize == 4 and sys.byteorder == "little"


def _words(data: bytes, end: int) -> Sequence[int]:
    """The little-endian 32-bit words of ``data[:end]`` (``end`` a multiple of 4)."""
    if _NATIVE_WORDS:
        return array("I", bytes(data[:end]))  # bytes: an array made from a memoryview takes it item by item
    return [int.from_bytes(data[i : i + 4], "little") for i in range(0, end, 4)]


def murmur2(data: bytes) -> int:
    """The 32-bit MurmurHash2 of ``data`` as Kafka's clients compute it (seed 0x9747b28c)."""
    length = len(data)
    h = _SEED ^ length
    end = length & ~3
    for k in _words(data, end):
        # Only the low 32 bits of each product matter: masking once per word is enough.
        k *= _M
        k ^= (k & _MASK) >> 24
        h = ((h * _M) ^ (k * _M)) & _MASK
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[end + 2] << 16
        if tail >= 2:
            h ^= data[end + 1] << 8
        h = ((h ^ data[end]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


class KeyPartitioner:
    """A producer partitioner placing records as Kafka's default one does, keeping recent keys' hashes.

    Usable wherever aiokafka or faust take a partitioner: called with the key
    bytes (or None), the topic's partitions and the available ones. A record
    without a key goes to a random available partition, as with the default.
    Up to ``keep`` hashes are kept; when that many are, all are dropped and
    kept anew (about 11 MiB at the default with keys of 108 bytes).
    """

    def __init__(self, keep: int = 50_000) -> None:
        self.keep = keep
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        if key.__class__ is not bytes:
            key = bytes(memoryview(key))  # a bytearray or memoryview, kept as a dict key (else TypeError)
        found = self._hashes.get(key)
        if found is None:
            if len(self._hashes) >= self.keep:
                self._hashes.clear()
            found = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[found % len(all_partitions)]
