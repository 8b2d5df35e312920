"""The LRU cache bounded in bytes as well as in entries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.enrich.cache import ENTRY_OVERHEAD, BoundedCache


def test_least_recently_used_entries_go_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(max_entries=2, max_bytes=10_000)
    cache.put("a", 1, 10)
    cache.put("b", 2, 10)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3, 10)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)


def test_bytes_bound_evicts_and_refuses_what_cannot_fit() -> None:
    cache: BoundedCache[str, str] = BoundedCache(max_entries=100, max_bytes=3 * (ENTRY_OVERHEAD + 100))
    for key in "abcd":
        assert cache.put(key, key, 100)
    assert len(cache) == 3 and cache.get("a") is None
    assert not cache.put("huge", "x", 10_000)
    assert cache.get("huge") is None and len(cache) == 3


def test_replacing_a_key_charges_it_once() -> None:
    cache: BoundedCache[str, int] = BoundedCache(max_entries=10, max_bytes=10_000)
    cache.put("a", 1, 100)
    cache.put("a", 2, 300)
    assert (cache.get("a"), cache.bytes, len(cache)) == (2, 300 + ENTRY_OVERHEAD, 1)


def test_zero_disables() -> None:
    for cache in (BoundedCache[str, int](0, 10_000), BoundedCache[str, int](10, 0)):
        assert not cache.put("a", 1, 1)
        assert cache.get("a") is None


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 2000)), max_size=200), st.integers(1, 10))
def test_both_bounds_always_hold(puts: list[tuple[int, int]], max_entries: int) -> None:
    cache: BoundedCache[int, int] = BoundedCache(max_entries, 5000)
    for key, cost in puts:
        cache.put(key, key, cost)
        assert len(cache) <= max_entries
        assert cache.bytes <= 5000
        assert cache.bytes == sum(c for _, c in cache._data.values())
