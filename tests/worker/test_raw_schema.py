"""The raw topic's schema and the worker app's events: what faust's own decoding and events give."""

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


def test_the_worker_app_makes_the_events_faust_makes() -> None:
    from pipeline.app import create_app
    from pipeline.settings import load_settings

    app = create_app(load_settings({"RUM_METRICS_PORT": "0", "RUM_WEB_PORT": "0"}))
    message = ConsumerMessage("t", 3, 7, 0.0, 0, [("h", b"1")], b"k", b"v", None)
    ours = app.create_event(b"k", b"v", message.headers, message)
    theirs = faust.App.create_event(app, b"k", b"v", message.headers, message)
    assert type(ours) is type(theirs) is app.conf.Event
    assert (ours.app, ours.key, ours.value, ours.headers, ours.message) == (
        theirs.app,
        theirs.key,
        theirs.value,
        theirs.headers,
        theirs.message,
    )
