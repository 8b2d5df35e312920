"""Covering ranges with 1d, 1h and 1m windows; reading times and spans."""

from __future__ import annotations

import itertools
import random

import pytest

from pipeline.view.ranges import RangeError, align, buckets, cover, iso, parse_span, parse_time

M, H, D = 60_000, 3_600_000, 86_400_000
SIZES = (60, 3600, 86400)
DAY0 = 1_764_288_000_000  # 2025-11-28T00:00:00Z


def test_rolling_day_from_an_arbitrary_minute_is_exact_and_uses_big_windows() -> None:
    start = DAY0 + 13 * H + 37 * M
    used = cover(start, start + D, SIZES)
    assert used.asked is None
    assert (used.start, used.end) == (start, start + D)
    # 23 minutes up to 14:00, 10 hours to midnight, 13 hours, 37 minutes.
    assert used.counts() == {"1h": 10 + 13, "1m": 23 + 37}
    spans = sorted((w.start, w.end) for w in used.windows)
    assert spans[0][0] == start and spans[-1][1] == start + D
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), "gap or overlap"


def test_whole_days_use_day_windows() -> None:
    used = cover(DAY0 - 2 * D, DAY0 + D + 5 * M, SIZES)
    assert used.counts() == {"1d": 3, "1m": 5}


def test_random_ranges_are_partitioned_exactly() -> None:
    rng = random.Random(3)
    for _ in range(300):
        start = DAY0 + rng.randrange(0, 9 * D // M) * M
        end = start + rng.randrange(1, 8 * D // M) * M
        used = cover(start, end, SIZES)
        covered = sum(w.end - w.start for w in used.windows)
        assert covered == end - start
        spans = sorted((w.start, w.end) for w in used.windows)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        for w in used.windows:
            assert w.start % (w.interval_s * 1000) == 0
        # Edges: never more than 23 hours and 59 minutes on each side.
        assert used.counts().get("1m", 0) <= 2 * 59 and used.counts().get("1h", 0) <= 2 * 23 + 23


def test_unaligned_range_is_widened_and_says_so() -> None:
    start = DAY0 + 10 * M + 15_000
    used = cover(start, start + H, SIZES)
    assert used.asked == (start, start + H)
    assert (used.start, used.end) == (DAY0 + 10 * M, DAY0 + 71 * M)
    assert align(start, start + 1, M) == (DAY0 + 10 * M, DAY0 + 11 * M)


def test_hour_only_intervals_widen_to_hours() -> None:
    used = cover(DAY0 + 90 * M, DAY0 + 150 * M, (3600, 86400))
    assert (used.start, used.end) == (DAY0 + H, DAY0 + 3 * H)
    assert used.counts() == {"1h": 2}


def test_intervals_that_do_not_divide_are_refused() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        cover(0, H, (120, 300))


def test_times_and_spans() -> None:
    assert parse_time("1764288000000", "from") == DAY0
    assert parse_time("2025-11-28T00:00:00Z", "from") == DAY0
    assert parse_time("2025-11-28T01:00:00+01:00", "from") == DAY0
    assert parse_time("2025-11-28T00:00", "from") == DAY0  # no zone: UTC
    assert iso(DAY0) == "2025-11-28T00:00:00Z"
    assert parse_span("15m", "last") == 15 * M and parse_span("7d", "last") == 7 * D
    with pytest.raises(RangeError) as caught:
        parse_time("yesterday", "to")
    assert caught.value.param == "to"
    with pytest.raises(RangeError, match="last"):
        parse_span("7x", "last")


def test_buckets_cut_the_last_one_short() -> None:
    assert buckets(0, 150 * M, H) == [(0, H), (H, 2 * H), (2 * H, 150 * M)]
