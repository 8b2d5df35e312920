"""Time ranges of a query and the windows that cover them.

All times are integer milliseconds since the Unix epoch, UTC; a range is
``[start, end)``. A range is covered by the largest windows that fit inside it
and smaller ones at its edges: with 1d, 1h and 1m windows, any minute-aligned
range is covered exactly, by at most one run of days, 23 hours and 59 minutes
on each side. Nothing here knows about Kafka or records.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.rollups.windows import SECOND_MS, format_interval, parse_interval

#: Names accepted by ``last``: rolling ranges that end now.
LAST_CHOICES = ("15m", "1h", "4h", "1d", "2d", "7d")

_EPOCH_MS = re.compile(r"[0-9]{1,15}")


class RangeError(ValueError):
    """A time or range that cannot be read; ``param`` names the offending parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def parse_time(text: str, param: str) -> int:
    """Epoch ms from ``text``: epoch milliseconds or ISO 8601 (``2026-12-07T10:00Z``; no zone = UTC)."""
    text = text.strip()
    if _EPOCH_MS.fullmatch(text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise RangeError(
            param, f"{text!r} is neither epoch milliseconds nor ISO 8601 (e.g. 2026-12-07T10:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_span(text: str, param: str) -> int:
    """Milliseconds in a span such as ``15m``, ``1h``, ``1d``, ``7d`` (whole days beyond a day)."""
    try:
        return parse_interval(text.strip()) * SECOND_MS
    except ValueError as exc:
        raise RangeError(param, str(exc).replace("interval", "span")) from None


def iso(ms: int) -> str:
    """``ms`` as ISO 8601 UTC text (seconds precision unless it has milliseconds)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    spec = "milliseconds" if ms % 1000 else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


@dataclass(frozen=True)
class Window:
    """One tumbling window: its interval (seconds) and start (ms)."""

    interval_s: int
    start: int

    @property
    def end(self) -> int:
        """End of the window, exclusive (ms)."""
        return self.start + self.interval_s * SECOND_MS

    @property
    def interval(self) -> str:
        """The interval's name, e.g. ``1h``."""
        return format_interval(self.interval_s)


@dataclass(frozen=True)
class Cover:
    """The windows covering a range, and what was widened to reach window edges."""

    start: int
    end: int
    windows: tuple[Window, ...]
    #: The range as asked, when it had to be widened to the edges of the smallest window.
    asked: tuple[int, int] | None = None

    def counts(self) -> dict[str, int]:
        """Number of windows used per interval name, largest interval first."""
        out: dict[str, int] = {}
        for window in sorted(self.windows, key=lambda w: -w.interval_s):
            out[window.interval] = out.get(window.interval, 0) + 1
        return out


def align(start: int, end: int, step_ms: int) -> tuple[int, int]:
    """``[start, end)`` widened outwards to multiples of ``step_ms`` (so no data inside is left out)."""
    low = start - start % step_ms
    high = end if end % step_ms == 0 else end - end % step_ms + step_ms
    return low, high


def cover(start: int, end: int, intervals_s: tuple[int, ...] | list[int]) -> Cover:
    """The windows covering ``[start, end)``: the largest that fit, smaller ones at the edges.

    The range is first widened to the edges of the smallest interval (``Cover.asked``
    then keeps the range asked for). Each interval must divide the next larger
    one (1m, 1h, 1d do), so that the edges left by a larger interval are
    multiples of the smaller ones; otherwise ValueError.
    """
    sizes = sorted(set(intervals_s))
    if not sizes:
        raise ValueError("no intervals to cover a range with")
    for small, large in itertools.pairwise(sizes):
        if large % small:
            raise ValueError(
                f"interval {format_interval(large)} is not a multiple of {format_interval(small)}"
            )
    low, high = align(start, end, sizes[0] * SECOND_MS)
    asked = None if (low, high) == (start, end) else (start, end)
    windows: list[Window] = []
    _fill(low, high, sorted(sizes, reverse=True), windows)
    windows.sort(key=lambda w: (w.start, -w.interval_s))
    return Cover(low, high, tuple(windows), asked)


def _fill(start: int, end: int, sizes: list[int], out: list[Window]) -> None:
    """Cover ``[start, end)`` (aligned to the smallest size) with the largest windows first."""
    if start >= end:
        return
    size, rest = sizes[0], sizes[1:]
    step = size * SECOND_MS
    first = -(-start // step) * step  # the first window edge at or after start
    last = end - end % step
    if first >= last or (not rest and (first != start or last != end)):
        if not rest:  # cannot happen for aligned input; a guard against a silent gap
            raise ValueError(f"[{start}, {end}) is not aligned to {format_interval(size)}")
        _fill(start, end, rest, out)
        return
    out.extend(Window(size, s) for s in range(first, last, step))
    _fill(start, first, rest, out)
    _fill(last, end, rest, out)


def buckets(start: int, end: int, every_ms: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive buckets of ``every_ms`` (the last one may be shorter)."""
    return [(s, min(s + every_ms, end)) for s in range(start, end, every_ms)]
