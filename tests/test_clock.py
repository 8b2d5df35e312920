"""The wall clock in epoch milliseconds, the unit of every record's times."""

from __future__ import annotations

import time

from pipeline.clock import now_ms


def test_now_is_whole_epoch_milliseconds_between_two_readings() -> None:
    before = time.time_ns() // 1_000_000
    now = now_ms()
    after = time.time_ns() // 1_000_000
    assert type(now) is int
    assert before <= now <= after


def test_now_is_milliseconds_not_seconds_or_microseconds() -> None:
    # 2020-01-01 and 2100-01-01 in ms: any other unit falls outside by orders of magnitude.
    assert 1_577_836_800_000 < now_ms() < 4_102_444_800_000
