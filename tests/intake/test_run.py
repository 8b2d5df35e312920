"""The intake process's own pieces that need no server: the limiter of repeated library messages."""

from __future__ import annotations

import logging

from pipeline.intake.run import RepeatLimiter


def test_a_repeated_message_passes_once_per_interval_and_counts_what_it_held_back() -> None:
    now = [100.0]
    limiter = RepeatLimiter(interval=10, clock=lambda: now[0])

    def record(text: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, text, args, None)

    assert limiter.filter(record("Unable connect to node with id %s", 1))
    assert not any(limiter.filter(record("Unable connect to node with id %s", 1)) for _ in range(500))
    assert limiter.filter(record("Unable connect to node with id %s", 2))  # another message
    now[0] += 10
    passed = record("Unable connect to node with id %s", 1)
    assert limiter.filter(passed)
    assert passed.getMessage() == "Unable connect to node with id 1 (500 more like it in 10 s)"
    now[0] += 30
    quiet = record("Unable connect to node with id %s", 1)
    assert limiter.filter(quiet) and quiet.getMessage() == "Unable connect to node with id 1"
