"""faust-streaming's private API that pipeline.worker.faust_private relies on is still as it was.

These break on a faust upgrade that renames or rewrites any of it: re-read the
new code, adapt faust_private.py, then update the fingerprints here.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from importlib.metadata import version

import pytest
from faust.events import Event
from faust.sensors import Sensor
from faust.streams import Stream
from faust.transport import consumer as faust_consumer
from faust.transport.conductor import Conductor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage, Message

from pipeline.app import create_app
from pipeline.settings import load_settings
from pipeline.worker.faust_private import (
    BatchDeliveryConsumer,
    QuietMonitor,
    ReadCommittedConsumerThread,
    ack_events,
    committed_position,
    read_position,
)

#: sha256 (first 16 hex digits) of the source of each faust function overridden or mirrored.
FINGERPRINTS = {
    faust_consumer.Consumer._drain_messages: "44a2500309e83c63",
    faust_consumer.Consumer._add_gap: "4df2573ded7c1c2c",
    faust_consumer.Consumer.wait_empty: "e4662fe24f094819",
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer: "c2701bfc3e6f6cad",
    faust_aiokafka.Consumer._new_consumer_thread: "0870ec53dea75083",
    # ack_events mirrors these; the batch delivery looks callbacks up as on_message does.
    Stream.ack: "32d7171a89b0931d",
    Event.ack: "2d29a6eda87c4ce5",
    Message.ack: "4751b72c4ed84153",
    Conductor._compile_message_handler: "9fbc0538097aa4ec",
}


def test_the_pinned_faust_version_is_installed() -> None:
    assert version("faust-streaming") == "0.15.3"


@pytest.mark.parametrize("function", list(FINGERPRINTS), ids=lambda f: f.__qualname__)
def test_overridden_faust_code_is_unchanged(function: object) -> None:
    source = inspect.getsource(function)  # type: ignore[arg-type]
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == FINGERPRINTS[function]


def test_the_private_attributes_read_exist_on_a_worker_consumer() -> None:
    app = create_app(load_settings({"RUM_METRICS_PORT": "0", "RUM_WEB_PORT": "0"}))
    consumer = app.consumer
    assert isinstance(consumer, BatchDeliveryConsumer)
    for name in ("_read_offset", "_committed_offset", "_commit_every", "_n_acked", "in_transaction"):
        assert hasattr(consumer, name), name
    for name in ("_tp_to_callback", "_tp_to_callback_lock"):
        assert hasattr(app.topics, name), name
    assert isinstance(app.monitor, QuietMonitor)
    assert consumer.in_transaction is False  # faust's own transactions stay off
    tp = faust_consumer.TP("t", 0)
    assert committed_position(consumer, tp) is None and read_position(consumer, tp) is None
    consumer._read_offset[tp] = 41
    assert read_position(consumer, tp) == 42


def test_the_worker_consumer_reads_committed_records_only() -> None:
    app = create_app(load_settings({"RUM_METRICS_PORT": "0", "RUM_WEB_PORT": "0"}))
    consumer = app.consumer

    async def build() -> str:
        thread = consumer._new_consumer_thread()
        assert isinstance(thread, ReadCommittedConsumerThread)
        client = thread._create_worker_consumer(app.transport)
        try:
            return client._isolation_level  # aiokafka's attribute: what its fetcher will ask for
        finally:
            await client.stop()

    assert asyncio.run(build()) == "read_committed"
    assert consumer.in_transaction is False


class _Recorder(Sensor):
    """A sensor that writes down the events and messages it is told are done."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[tuple[str, int]] = []

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: object, event: object, state: object = None
    ) -> None:
        self.out.append(("event", offset))

    def on_message_out(self, tp: TP, offset: int, message: object) -> None:
        self.out.append(("message", offset))


def _acked_state(with_recorder: bool) -> tuple[dict[str, object], dict[str, object], list[tuple[str, int]]]:
    """The consumer's acked offsets after the same events are acknowledged by ack_events and by Stream.ack."""
    app = create_app(load_settings({"RUM_METRICS_PORT": "0", "RUM_WEB_PORT": "0"}))
    app.sensors.add(app.monitor)  # as the app does when it starts
    recorder = _Recorder()
    if with_recorder:
        app.sensors.add(recorder)
    consumer = app.consumer
    topic = app.topic("acks", key_serializer="raw", value_serializer="raw")
    stream = app.stream(topic)
    app.topics._acking_topics.add("acks")

    def events(partition: int) -> list[Event]:
        made = []
        for offset in (0, 1, 2, 4):  # a gap at 3: acked offsets are kept as they came
            message = ConsumerMessage("acks", partition, offset, 0.0, 0, [], b"k", b"v", None)
            message.incref()
            consumer.track_message(message)
            made.append(app.create_event(b"k", b"v", [], message))
        # One message referenced twice (two streams): done only at its second ack.
        made[0].message.incref()
        made.append(made[0])
        return made

    async def ack_both() -> None:
        await ack_events(stream, events(0))
        for event in events(1):
            await stream.ack(event)

    asyncio.run(ack_both())

    def state(partition: int) -> dict[str, object]:
        tp = TP("acks", partition)
        return {"acked": list(consumer._acked[tp]), "index": set(consumer._acked_index[tp])}

    return state(0), state(1), recorder.out


@pytest.mark.parametrize("with_recorder", [False, True], ids=["quiet", "another sensor"])
def test_ack_events_leaves_the_consumer_as_stream_ack_does(with_recorder: bool) -> None:
    batch, one_by_one, told = _acked_state(with_recorder)
    assert batch == one_by_one
    assert batch["acked"] == [1, 2, 4, 0]  # offset 0 only at its second acknowledgement
    if with_recorder:
        # Sensors other than the quiet monitor hear of every event, and of each message once.
        assert told[: len(told) // 2] == told[len(told) // 2 :]
        assert told[:5] == [("event", 0), ("event", 1), ("message", 1), ("event", 2), ("message", 2)]
    else:
        assert told == []
