"""Building window columns ahead of queries, so that no query pays for a window's first use.

A query merges cached window columns (:mod:`pipeline.view.columns`); a window
not yet cached is built on the spot, its sketches decoded, about 2 ms per
window of 250 groups: a rolling day that finds none of its 83 windows cached
takes several times as long as one that finds them all. A :class:`Warmer`
builds them beforehand, a slice of time at a time, from the view's event loop
(:class:`~pipeline.view.reader.ViewReader` once caught up):

- every window of every rollup (not the ``:late`` counts, which queries read
  entry by entry): days, then hours (few, and in every long range), then minutes,
  each newest window end first: "the last hour / day" before older ones;
- then, live, each window a record changed (the store drops its columns on every
  applied or removed record; the cache notes the window as stale), in the same
  order;
- up to ``fill`` of the cache's byte bound, so that what it built is not pushed
  out by itself; windows past that are built by the queries that use them.

The columns are the ones a query builds (same code), so answers do not change.
"""

from __future__ import annotations

import time

from pipeline.rollups.compiled import LATE_SUFFIX
from pipeline.view.columns import CacheKey
from pipeline.view.store import ViewStore

#: Share of the window cache's byte bound warming may fill.
DEFAULT_FILL = 0.75


class Warmer:
    """Builds the columns of a store's windows, newest first, in slices (see the module)."""

    def __init__(self, store: ViewStore, fill: float = DEFAULT_FILL) -> None:
        self.store = store
        self.fill = fill
        #: Windows built by warming, since the start.
        self.built = 0
        self._queue: list[CacheKey] = []
        self._listed = False
        store.window_cache.track_stale = True

    def _full(self) -> bool:
        cache = self.store.window_cache
        return cache.nbytes >= self.fill * cache.max_bytes

    def _list(self) -> list[CacheKey]:
        """Windows not cached, in the reverse of the order to build them (the queue is popped
        from its end): the longest windows first, then the newest."""
        cache = self.store.window_cache
        found = [
            (seconds, start + seconds * 1000, (rollup, seconds, start))
            for rollup, windows in self.store.rollups.items()
            if not rollup.endswith(LATE_SUFFIX)
            for seconds, start in windows
            if not cache.holds((rollup, seconds, start))
        ]
        found.sort()
        return [key for _, _, key in found]

    def done(self) -> bool:
        """Whether every window is built (or the cache is as full as warming may fill it)."""
        return self._listed and not self._queue and not self.store.window_cache.stale

    def step(self, budget_s: float) -> bool:
        """Build windows for about ``budget_s`` seconds (at least one); returns :meth:`done`."""
        cache = self.store.window_cache
        if not self._listed:
            self._queue = self._list()
            self._listed = True
        elif cache.stale and not self._queue:
            stale = cache.stale
            cache.stale = set()
            fresh = [k for k in stale if not k[0].endswith(LATE_SUFFIX)]
            self._queue = sorted(fresh, key=lambda k: (k[1], k[2] + k[1] * 1000))
        deadline = time.perf_counter() + budget_s
        while self._queue:
            if self._full():
                self._queue.clear()
                cache.stale.clear()  # queries build what they use; nothing more to do here
                break
            key = self._queue.pop()
            groups = self.store.rollup_window(*key)
            if not groups or cache.holds(key):
                continue  # removed, or a query built it meanwhile
            columns = cache.window(key, groups)
            cache.sketches(key, columns, self.store.sketch_data)
            self.built += 1
            if time.perf_counter() >= deadline:
                break
        return self.done()
