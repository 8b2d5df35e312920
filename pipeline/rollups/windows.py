"""Event-time tumbling windows: intervals, alignment, watermarks, lateness.

Semantics (all times are integer milliseconds since the Unix epoch, UTC):

- A window of interval ``I`` covers ``[start, end)`` with ``start`` a multiple of
  ``I`` counted from 1970-01-01T00:00:00Z and ``end = start + I``. An event at
  exactly ``end`` belongs to the next window. Because intervals divide a day (or
  are whole days), windows never straddle a UTC midnight.
- The *watermark* of a source partition is the largest event time seen on it,
  among events that were not classified ``future``. It only moves forward.
- A window is *final* once ``end + grace <= watermark``: no on-time event can
  change it any more, and rollup records for it say ``final: true``.
- Classifying an event against its partition's watermark:
  ``future`` when ``event > receive + 24h`` (a client clock far ahead; such events
  must not advance the watermark, or one bad clock would make every other event
  late); otherwise ``late`` when its window is already final
  (``window_end(event) + grace <= watermark``); otherwise ``on_time``.
  Late and future events are routed elsewhere by the caller, never dropped.

This module imports nothing from the project so that configuration code can use
``parse_interval`` without import cycles.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

SECOND_MS = 1000
DAY_S = 86_400
#: Events further ahead of their receive time than this are classified ``future``.
FUTURE_TOLERANCE_MS = DAY_S * SECOND_MS

#: Seconds per duration unit, for every duration the pipeline reads (``30s``, ``5m``, ``1h``, ``1d``).
UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY_S}
_INTERVAL = re.compile(r"([1-9][0-9]{0,5})([smhd])")

Classification = Literal["on_time", "late", "future"]


def parse_interval(text: str) -> int:
    """Seconds in an interval such as ``30s``, ``1m``, ``5m``, ``1h``, ``1d``.

    Accepted: a positive integer without sign or leading zero, then one unit
    ``s``, ``m``, ``h`` or ``d``, nothing else (no spaces, no upper case). The
    interval must divide a day evenly (``7m`` does not) or be a whole number of
    days, so that windows align on UTC day boundaries. Raises ValueError.
    """
    if not isinstance(text, str):
        raise ValueError(f"interval must be a string like '1m', got {text!r}")
    return _parse_interval(text)


@lru_cache(maxsize=256)  # called for every rollup key made or read: the same few texts again and again
def _parse_interval(text: str) -> int:
    match = _INTERVAL.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid interval {text!r}: expected <positive integer><s|m|h|d>, e.g. 30s, 5m, 1h, 1d"
        )
    seconds = int(match.group(1)) * UNITS[match.group(2)]
    if DAY_S % seconds and seconds % DAY_S:
        raise ValueError(
            f"invalid interval {text!r}: it must divide a day evenly or be a whole number of days"
        )
    return seconds


def format_interval(seconds: int) -> str:
    """The shortest name of an interval in seconds (``3600`` -> ``1h``); inverse of parse_interval."""
    if seconds <= 0:
        raise ValueError(f"interval must be positive, got {seconds}")
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"


def window_start(ts_ms: int, interval_s: int) -> int:
    """Start (ms, inclusive) of the window holding ``ts_ms``; floors correctly before 1970 too."""
    size = interval_s * SECOND_MS
    return ts_ms - ts_ms % size


def window_end(ts_ms: int, interval_s: int) -> int:
    """End (ms, exclusive) of the window holding ``ts_ms``."""
    return window_start(ts_ms, interval_s) + interval_s * SECOND_MS


def is_final(window_end_ms: int, watermark_ms: int | None, grace_ms: int) -> bool:
    """True once the watermark has passed the window end plus the grace period."""
    return watermark_ms is not None and window_end_ms + grace_ms <= watermark_ms


def classify(
    event_ms: int,
    watermark_ms: int | None,
    grace_ms: int,
    receive_ms: int,
    *,
    interval_s: int,
) -> Classification:
    """``on_time``, ``late`` or ``future`` for an event, as defined in the module docstring.

    ``interval_s`` is required because lateness depends on the window: an event
    can be late for its 1m window and on time for its 1h window.
    """
    if event_ms > receive_ms + FUTURE_TOLERANCE_MS:
        return "future"
    if is_final(window_end(event_ms, interval_s), watermark_ms, grace_ms):
        return "late"
    return "on_time"


class WindowClock:
    """Watermarks of the source partitions one worker reads.

    Keep it in the same changelog-backed state as the partial aggregates: after
    a restart the watermark must be where it was, or windows already reported
    final could receive events again.
    """

    def __init__(self, watermarks: dict[int, int] | None = None) -> None:
        self._watermarks: dict[int, int] = dict(watermarks or {})

    def watermark(self, partition: int) -> int | None:
        """Largest accepted event time seen on ``partition``, None before its first event."""
        return self._watermarks.get(partition)

    def observe(
        self, partition: int, event_ms: int, receive_ms: int, *, interval_s: int, grace_ms: int
    ) -> Classification:
        """Classify an event against the partition's current watermark, then advance it.

        The watermark moves only for events that are not ``future``; late events
        cannot move it since they are below it.
        """
        verdict = classify(event_ms, self.watermark(partition), grace_ms, receive_ms, interval_s=interval_s)
        if verdict != "future":
            self.advance(partition, event_ms)
        return verdict

    def advance(self, partition: int, event_ms: int) -> None:
        """Move the partition's watermark forward to ``event_ms`` (never backwards)."""
        current = self._watermarks.get(partition)
        if current is None or event_ms > current:
            self._watermarks[partition] = event_ms

    def low_watermark(self, partitions: range | list[int]) -> int | None:
        """Smallest watermark over ``partitions``; None while any of them has seen nothing.

        A merged rollup is final only when every source partition has passed the
        window: an idle partition therefore holds finality back until it sees an event.
        """
        marks = [self._watermarks.get(p) for p in partitions]
        if not marks or any(m is None for m in marks):
            return None
        return min(m for m in marks if m is not None)

    def to_dict(self) -> dict[str, int]:
        """JSON-friendly form (partition numbers as strings, since JSON keys are strings)."""
        return {str(p): w for p, w in sorted(self._watermarks.items())}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> WindowClock:
        """Inverse of ``to_dict``."""
        return cls({int(p): int(w) for p, w in data.items()})
