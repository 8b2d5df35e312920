"""The peer the worker is measured against: a Quix Streams application running the project's `Processor`.

It consumes the raw topic of the pipeline's settings (``RUM_*`` variables,
topic prefix included), turns each message into exactly one output with
:meth:`pipeline.process.Processor.process`, and produces it to the enriched
topic, or a bad row to the bad-row topic, as plainly as Quix Streams puts it:
one ``apply``, one ``filter`` and one ``to_topic``. Like the worker it drops
copies of an action seen before on the same raw partition (the worker's own
:class:`~pipeline.worker.dedupe.SeenIds`, one per partition), so both sides do
the same work per action: the job of a worker with ``RUM_ROLLUPS=false``. The
peer keeps those ids in memory only, where the worker also writes them to a
changelog in each transaction: a restarted peer forgets them, a restarted
worker does not. ``--no-dedupe`` leaves deduplication out (the peer as first
measured). bench/peers.py starts it as a child process and stops it with
SIGTERM once every output has arrived.

    python bench/quix_peer.py [--guarantee at-least-once|exactly-once] [--no-dedupe]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from quixstreams import Application, message_context
from quixstreams.models.serializers import SerializationContext, Serializer
from quixstreams.models.topics import Topic

from pipeline.process import Output, Processor
from pipeline.settings import Settings, load_settings
from pipeline.topics import BAD, ENRICHED, RAW
from pipeline.worker.dedupe import SeenIds

GUARANTEES = ("at-least-once", "exactly-once")


class OutputValue(Serializer):
    """Writes an :class:`~pipeline.process.Output` as its encoded record (already bytes)."""

    def __call__(self, value: Output, ctx: SerializationContext) -> bytes:
        return value.value


def router(enriched: Topic, bad: Topic) -> Any:
    """The ``to_topic`` callback: an enriched action to ``enriched``, a bad row to ``bad``."""

    def route(value: Output, key: Any, timestamp: int, headers: Any) -> Topic:
        return enriched if value.bad_kind is None else bad

    return route


def enricher(processor: Processor, window_ms: int | None) -> Any:
    """The ``apply`` callback: one raw message (with its metadata) to its output.

    With ``window_ms``, copies of actions seen within it on the same partition
    give an output marked ``duplicate`` (see :func:`new`), as in the worker.
    """
    process = processor.process
    seen: dict[int, Any] = {}

    def enrich(value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> Output:
        where = message_context()
        partition = where.partition
        check = None
        if window_ms is not None:
            check = seen.get(partition)
            if check is None:
                check = seen[partition] = SeenIds(window_ms).seen
        return process(
            value, key=key, topic=where.topic, partition=partition, offset=where.offset, seen=check
        )

    return enrich


def new(value: Output) -> bool:
    """The ``filter`` callback: False for a copy of an action seen before (nothing to write)."""
    return not value.duplicate


def build(settings: Settings, guarantee: str, state_dir: str, dedupe: bool = True) -> Application:
    """The application over the topics of ``settings``, ready to run."""
    app = Application(
        broker_address=",".join(settings.bootstrap_servers),
        consumer_group=f"{settings.kafka.app_id}-quix",
        auto_offset_reset="earliest",
        processing_guarantee=guarantee,  # type: ignore[arg-type]
        state_dir=state_dir,
        use_changelog_topics=False,
        loglevel="WARNING",
    )
    source = app.topic(settings.topic(RAW), key_deserializer="bytes", value_deserializer="bytes")
    enriched = app.topic(settings.topic(ENRICHED), key_serializer="bytes", value_serializer=OutputValue())
    bad = app.topic(settings.topic(BAD), key_serializer="bytes", value_serializer=OutputValue())
    sdf = app.dataframe(source)
    # The worker's window (rollups off: a day plus its default grace of 60 s).
    window_ms = int((settings.worker.dedupe_window or 86400 + 60) * 1000) if dedupe else None
    sdf = sdf.apply(enricher(Processor(settings), window_ms), metadata=True)
    if dedupe:
        sdf = sdf.filter(new)
    sdf.to_topic(router(enriched, bad))
    return app


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--guarantee", choices=GUARANTEES, default="at-least-once")
    parser.add_argument(
        "--no-dedupe", dest="dedupe", action="store_false", help="leave the deduplication by action id out"
    )
    args = parser.parse_args()
    settings = load_settings({k: v for k, v in os.environ.items() if k.startswith("RUM_")})
    with tempfile.TemporaryDirectory() as state_dir:
        build(settings, args.guarantee, state_dir, args.dedupe).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
