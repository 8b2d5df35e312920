"""The raw topic's schema gives the bytes the ``raw`` serializer gives, with faust's own decoding."""

from __future__ import annotations

import asyncio

import faust
from faust.types.tuples import ConsumerMessage

from pipeline.worker.raw_schema import RawBytes


def test_events_carry_the_same_key_and_value_as_with_the_raw_serializer() -> None:
    app = faust.App("raw-schema-test", broker="kafka://127.0.0.1:1")
    ours = app.topic("t", schema=RawBytes()).schema
    theirs = app.topic("t", key_serializer="raw", value_serializer="raw").schema

    async def decoded() -> list[tuple[object, object, object, object]]:
        out = []
        for key, value in [(b"k", b'{"a": 1}'), (None, b"v"), (b"\xff\x00", b""), (b"k", None)]:
            message = ConsumerMessage("t", 0, 0, 0.0, 0, [], key, value, None)
            a = await ours.decode(app, message)
            b = await theirs.decode(app, message)
            out.append((a.key, b.key, a.value, b.value))
        return out

    for key, expected_key, value, expected_value in asyncio.run(decoded()):
        assert key == expected_key and value == expected_value
