"""Event-time tumbling windows: interval parsing, alignment, finality, classification."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.rollups.windows import (
    FUTURE_TOLERANCE_MS,
    WindowClock,
    classify,
    format_interval,
    is_final,
    parse_interval,
    window_end,
    window_start,
)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1), ("30s", 30), ("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("6h", 21600),
     ("1d", 86400), ("7d", 604800), ("90s", 90), ("24h", 86400), ("1440m", 86400)],
)  # fmt: skip
def test_parse_interval(text: str, seconds: int) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "1", "m", "0m", "01m", "-1m", "+1m", "1.5m", "1M", "1H", "1w", "1 m", " 1m", "1m ", "1mm",
     "7m", "25h", "1000000s", "1h30m"],
)  # fmt: skip
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid interval"):
        parse_interval(text)


def test_parse_interval_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_interval(60)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (60, "1m"), (300, "5m"), (3600, "1h"), (86400, "1d"), (90, "90s")]
)
def test_format_interval(seconds: int, text: str) -> None:
    assert format_interval(seconds) == text
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    ("ts", "interval", "start", "end"),
    [
        ("2026-11-28T10:17:42Z", "1h", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z"),
        ("2026-11-28T10:17:42Z", "1m", "2026-11-28T10:17:00Z", "2026-11-28T10:18:00Z"),
        ("2026-11-28T10:17:42Z", "5m", "2026-11-28T10:15:00Z", "2026-11-28T10:20:00Z"),
        ("2026-11-28T10:17:42Z", "30s", "2026-11-28T10:17:30Z", "2026-11-28T10:18:00Z"),
        ("2026-11-28T10:17:42Z", "1d", "2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z"),
        ("2026-11-28T10:00:00Z", "1h", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z"),  # start is inside
        ("2026-11-28T10:59:59.999Z", "1h", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z"),
        ("1969-12-31T23:59:30Z", "1m", "1969-12-31T23:59:00Z", "1970-01-01T00:00:00Z"),  # before epoch
    ],
)
def test_window_alignment(ts: str, interval: str, start: str, end: str) -> None:
    seconds = parse_interval(interval)
    assert window_start(ms(ts), seconds) == ms(start)
    assert window_end(ms(ts), seconds) == ms(end)


@given(st.integers(min_value=-(10**13), max_value=10**13), st.sampled_from([30, 60, 300, 3600, 86400]))
def test_window_contains_its_event(ts: int, interval_s: int) -> None:
    start = window_start(ts, interval_s)
    assert start <= ts < window_end(ts, interval_s) == start + interval_s * 1000
    assert start % (interval_s * 1000) == 0
    assert datetime.fromtimestamp(start / 1000, UTC).second == 0 or interval_s < 60


@pytest.mark.parametrize(
    ("end", "watermark", "grace", "final"),
    [
        (HOUR_MS, None, 0, False),
        (HOUR_MS, HOUR_MS - 1, 0, False),
        (HOUR_MS, HOUR_MS, 0, True),
        (HOUR_MS, HOUR_MS + MINUTE_MS - 1, MINUTE_MS, False),
        (HOUR_MS, HOUR_MS + MINUTE_MS, MINUTE_MS, True),
    ],
)
def test_is_final(end: int, watermark: int | None, grace: int, final: bool) -> None:
    assert is_final(end, watermark, grace) is final


T = ms("2026-11-28T10:17:42Z")


@pytest.mark.parametrize(
    ("event", "watermark", "grace", "receive", "interval", "verdict"),
    [
        (T, None, 0, T, 60, "on_time"),  # nothing seen yet on the partition
        (T, T + 5_000, 0, T, 60, "on_time"),  # behind the watermark but its window is open
        (T, ms("2026-11-28T10:18:00Z"), 0, T, 60, "late"),  # window end == watermark: final
        (T, ms("2026-11-28T10:18:00Z"), 30_000, T, 60, "on_time"),  # grace keeps it open
        (T, ms("2026-11-28T10:18:30Z"), 30_000, T, 60, "late"),
        (T, ms("2026-11-28T10:18:30Z"), 30_000, T, 3600, "on_time"),  # the 1h window is open
        (T, ms("2026-11-28T11:00:00Z"), 0, T, 3600, "late"),
        (T + FUTURE_TOLERANCE_MS, T, 0, T, 60, "on_time"),  # exactly 24h ahead is tolerated
        (T + FUTURE_TOLERANCE_MS + 1, T, 0, T, 60, "future"),
        (T + FUTURE_TOLERANCE_MS + 1, T + 10 * HOUR_MS * 24, 0, T, 60, "future"),  # future wins
    ],
)
def test_classify(
    event: int, watermark: int | None, grace: int, receive: int, interval: int, verdict: str
) -> None:
    assert classify(event, watermark, grace, receive, interval_s=interval) == verdict


def test_clock_advances_only_on_accepted_events() -> None:
    clock = WindowClock()
    assert clock.observe(0, T, T, interval_s=60, grace_ms=0) == "on_time"
    assert clock.watermark(0) == T
    # A far-future client clock does not move the watermark...
    assert clock.observe(0, T + 2 * FUTURE_TOLERANCE_MS, T, interval_s=60, grace_ms=0) == "future"
    assert clock.watermark(0) == T
    # ...so later events are not made late by it.
    assert clock.observe(0, T + 1_000, T + 1_000, interval_s=60, grace_ms=0) == "on_time"
    assert clock.watermark(0) == T + 1_000
    late = T - 10 * MINUTE_MS
    assert clock.observe(0, late, T + 1_000, interval_s=60, grace_ms=0) == "late"
    assert clock.watermark(0) == T + 1_000  # never backwards
    assert clock.watermark(1) is None  # partitions are independent


def test_low_watermark_and_round_trip() -> None:
    clock = WindowClock()
    clock.advance(0, 5_000)
    clock.advance(2, 3_000)
    assert clock.low_watermark([0, 2]) == 3_000
    assert clock.low_watermark(range(3)) is None  # partition 1 has seen nothing
    assert clock.low_watermark([]) is None
    restored = WindowClock.from_dict(clock.to_dict())
    assert restored.to_dict() == {"0": 5_000, "2": 3_000}
    assert restored.low_watermark([0, 2]) == 3_000
