"""Building window columns ahead of queries, so that no query pays for a window's first use.

A query merges cached window columns (:mod:`pipeline.view.columns`); a window
not yet cached is built on the spot, its sketches decoded, about 2 ms per
window of 250 groups: a rolling day that finds none of its 83 windows cached
takes several times as long as one that finds them all. A :class:`Warmer`
builds them beforehand, a slice of time at a time, from the view's event loop
(:class:`~pipeline.view.reader.ViewReader` once caught up), in this order:

1. days, then hours, newest first: few, and in every long range;
2. the edges of the rolling ranges (``last 15m | 1h | ... | 7d``): a range
   ending now is covered by days and hours inside it and windows shorter than
   an hour only at its two ends, the minutes of the current hour (and of the
   previous one, for ranges shorter than an hour or crossing its start) and the
   minutes after ``now - span``. First the short windows each span's range uses
   now (a day's first), then those of the hour after each ``now - span`` (where
   the start moves within the hour), then the rest of the hours of ``now``,
   ``now - 1h`` and each ``now - span``;
3. every other window, newest first;
4. then, live, each window a record changed (the store drops its columns on every
   applied or removed record; the cache notes the window as stale), and, as the
   clock moves on (each new minute), the edge windows not built yet.

Windows of steps 3 and 4 that are not edges, days or hours are built up to
``fill`` of the cache's byte bound, so that what warming built is not pushed out
by itself; those past that are built by the queries that use them. Days, hours
and edges are built past ``fill`` too: room is made for them by forgetting the
least recently used of the other windows.

The columns are the ones a query builds (same code), so answers do not change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pipeline.clock import now_ms
from pipeline.rollups.compiled import LATE_SUFFIX
from pipeline.rollups.windows import SECOND_MS
from pipeline.view.columns import CacheKey
from pipeline.view.ranges import LAST_CHOICES, cover, parse_span
from pipeline.view.store import ViewStore

#: Share of the window cache's byte bound warming may fill with windows other than edges.
DEFAULT_FILL = 0.75
#: Windows this long or longer are built first (a range takes them whole in its middle).
LONG_S = 3600
_HOUR_MS = LONG_S * SECOND_MS
_MINUTE_MS = 60 * SECOND_MS
#: Rolling spans whose edges are kept built: the ``last`` choices of a query, the default (a day)
#: first.
ROLLING_SPANS_MS: tuple[int, ...] = tuple(
    parse_span(s, "last") for s in sorted(LAST_CHOICES, key=lambda s: s != "1d")
)


def edge_hours(now: int, spans_ms: Sequence[int]) -> list[int]:
    """Starts of the hours whose short windows rolling ranges ending at ``now`` (or within the next
    hour) use at their edges, in the order to build them: the end edge, then each span's start."""
    hour = now - now % _HOUR_MS
    out = [hour, hour - _HOUR_MS] if spans_ms else []
    for span in spans_ms:
        start = now - span
        first = start - start % _HOUR_MS
        out += [first, first + _HOUR_MS]
    return list(dict.fromkeys(h for h in out if h <= hour))


class Warmer:
    """Builds the columns of a store's windows, rolling edges first, in slices (see the module).

    ``spans_ms`` are the rolling spans whose edges come before other short windows
    (none: days, hours, then every other window newest first); ``clock`` gives now in
    epoch ms.
    """

    def __init__(
        self,
        store: ViewStore,
        fill: float = DEFAULT_FILL,
        *,
        spans_ms: Sequence[int] = ROLLING_SPANS_MS,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.fill = fill
        self.spans_ms = tuple(spans_ms)
        self.clock = clock
        #: Windows built by warming, since the start.
        self.built = 0
        #: Whether the days, hours and edge windows listed first were built (or found built).
        self.rolling = False
        self._queue: list[CacheKey] = []
        self._listed = False
        self._minute: int | None = None
        #: The edge windows at the last minute looked at, and those of them to build first.
        self._edges: set[CacheKey] = set()
        self._urgent: list[CacheKey] = []
        store.window_cache.track_stale = True

    def _full(self) -> bool:
        cache = self.store.window_cache
        return cache.nbytes >= self.fill * cache.max_bytes

    def _first(self, key: CacheKey) -> bool:
        """Whether ``key`` is built whatever the fill: a day, an hour or an edge window."""
        return key[1] >= LONG_S or key in self._edges

    def edges(self, now: int) -> list[CacheKey]:
        """The store's edge windows at ``now`` (see the module), in the order to build them: those
        the rolling ranges use now, then those of the hours their starts move into next, then the
        rest of the edge hours (for ranges that ended a little earlier)."""
        rollups = {
            rollup: (windows, sorted({s for s, _ in windows}))
            for rollup, windows in self.store.rollups.items()
            if not rollup.endswith(LATE_SUFFIX)
        }
        out: list[CacheKey] = []
        for span in self.spans_ms:  # in use now
            for rollup, (windows, intervals) in rollups.items():
                try:
                    used = cover(now - span, now, intervals).windows
                except ValueError:  # intervals that do not divide each other: no cover to follow
                    continue
                out += [
                    (rollup, w.interval_s, w.start)
                    for w in sorted(used, key=lambda w: -w.start)
                    if w.interval_s < LONG_S and (w.interval_s, w.start) in windows
                ]
        hours = edge_hours(now, self.spans_ms)
        now_hour = now - now % _HOUR_MS
        # The hour after each span's start: the start moves into it within the hour.
        following = [(now - span) // _HOUR_MS * _HOUR_MS + _HOUR_MS for span in self.spans_ms]
        following = [h for h in dict.fromkeys(following) if h < now_hour]
        for hour in following + [h for h in hours if h not in following]:
            for rollup, (windows, intervals) in rollups.items():
                for seconds in reversed(intervals):
                    if seconds >= LONG_S:
                        continue
                    step = seconds * SECOND_MS
                    out += [
                        (rollup, seconds, start)
                        for start in range(hour + _HOUR_MS - step, hour - 1, -step)
                        if (seconds, start) in windows
                    ]
        return list(dict.fromkeys(out))

    def _list(self, edges: list[CacheKey]) -> list[CacheKey]:
        """Windows not cached, in the reverse of the order to build them (the queue is popped
        from its end): days and hours newest first, then ``edges``, then the rest newest first."""
        cache = self.store.window_cache
        rank = {key: i for i, key in enumerate(edges)}
        found = [
            (seconds < LONG_S, rank.get(key, len(rank)), -seconds, -start, key)
            for rollup, windows in self.store.rollups.items()
            if not rollup.endswith(LATE_SUFFIX)
            for seconds, start in windows
            if not cache.holds(key := (rollup, seconds, start))
        ]
        found.sort(reverse=True)
        return [item[-1] for item in found]

    def due(self) -> bool:
        """Whether there is work since :meth:`step` last returned: changed windows or a new minute."""
        return bool(self.store.window_cache.stale) or self.clock() // _MINUTE_MS != self._minute

    def done(self) -> bool:
        """Whether every window is built (or the cache is as full as warming may fill it)."""
        return self._listed and not self._queue and not self._urgent and not self.store.window_cache.stale

    def _look(self) -> None:
        """Each new minute: the edge windows of now, those not built yet first."""
        now = self.clock()
        if now // _MINUTE_MS == self._minute:
            return
        self._minute = now // _MINUTE_MS
        edges = self.edges(now) if self.spans_ms else []
        self._edges = set(edges)
        if not self._listed:
            self._queue = self._list(edges)
            self._listed = True
        else:
            cache = self.store.window_cache
            self._urgent = [k for k in reversed(edges) if not cache.holds(k)]

    def _room(self) -> None:
        """Forget the least recently used windows other than days, hours and edges, down to ``fill``."""
        cache = self.store.window_cache
        for key in cache.held():
            if not self._full():
                return
            if not self._first(key):
                cache.release(key)

    def step(self, budget_s: float) -> bool:
        """Build windows for about ``budget_s`` seconds (at least one); returns :meth:`done`."""
        cache = self.store.window_cache
        self._look()
        if cache.stale and not self._queue:
            stale = cache.stale
            cache.stale = set()
            fresh = [k for k in stale if not k[0].endswith(LATE_SUFFIX)]
            self._queue = sorted(fresh, key=lambda k: (not self._first(k), -k[1], -k[2]), reverse=True)
        deadline = time.perf_counter() + budget_s
        while self._urgent or self._queue:
            key = self._urgent.pop() if self._urgent else self._queue.pop()
            if self._full():
                if not self._first(key):
                    # Queries build what they use; only days, hours and edges are left to build.
                    self._queue = [k for k in self._queue if self._first(k)]
                    cache.stale = {k for k in cache.stale if self._first(k)}
                    continue
                self._room()
            groups = self.store.rollup_window(*key)
            if groups and not cache.holds(key):  # else removed, or a query built it meanwhile
                columns = cache.window(key, groups)
                cache.sketches(key, columns, self.store.sketch_data)
                self.built += 1
            if not self.rolling and not self._urgent and not (self._queue and self._first(self._queue[-1])):
                self.rolling = True
            if time.perf_counter() >= deadline:
                break
        if not self._urgent and not self._queue:
            self.rolling = True
        return self.done()
