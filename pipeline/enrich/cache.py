"""A least-recently-used cache bounded in bytes as well as in entries.

``functools.lru_cache`` bounds entries only, so its memory follows the size
of whatever keys and values arrive: distinct 1 MB user agents would each stay
for as long as they are recent. This cache charges every entry a cost in
bytes (given by the caller, who knows the value's shape), evicts the least
recently used entries until both bounds hold, and never stores an entry
whose cost alone exceeds the byte bound.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: Bytes an OrderedDict entry costs beyond its key and value (hash slot, link node, tuple).
ENTRY_OVERHEAD = 200


def strings_cost(strings: Iterable[str]) -> int:
    """Bytes held by ``strings`` (as Python objects)."""
    return sum(sys.getsizeof(s) for s in strings)


class BoundedCache(Generic[K, V]):
    """LRU mapping holding at most ``max_entries`` entries and ``max_bytes`` charged bytes.

    ``max_entries`` 0 or ``max_bytes`` 0 disables it (nothing is stored).
    Not thread-safe: one instance per worker thread, like the enrichments.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._move_to_end = self._data.move_to_end
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        """The cached value (now the most recently used), or None."""
        item = self._data.get(key)
        if item is None:
            self.misses += 1
            return None
        self._move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key: K, value: V, cost: int) -> bool:
        """Store ``value`` charged ``cost`` bytes (plus the entry overhead); False if it cannot fit."""
        cost += ENTRY_OVERHEAD
        if cost > self.max_bytes or self.max_entries <= 0:
            return False
        data = self._data
        old = data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        while data and (len(data) >= self.max_entries or self.bytes + cost > self.max_bytes):
            _, (_, evicted) = data.popitem(last=False)
            self.bytes -= evicted
        data[key] = (value, cost)
        self.bytes += cost
        return True

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Forget every entry (the hit and miss counts stay)."""
        self._data.clear()
        self.bytes = 0
