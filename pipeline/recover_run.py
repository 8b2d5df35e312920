"""The Kafka side of `rum-pipeline recover`: read, reconcile, publish in transactions, report.

Exactly once, even when run twice, with other filters, or after a crash:

- the ledger topic records every recovered input, keyed by its source
  position, in the same transaction as the raw record that re-publishes it;
  a run reads the committed ledger first and skips what it holds;
- one fixed transactional id: a new run fences a run still going (its open
  transaction is aborted, its next commit fails) before reading the ledger;
- workers read the raw topic read_committed, so the records of an aborted
  transaction never reach them: the next run publishes those inputs again.
  Each run commits a marker (the raw end offsets when it began) and marks it
  finished at its end, so an interrupted run can be told from a finished one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ProducerFenced
from rich.console import Console
from rich.table import Table

from pipeline.admin import check_reachable, create_topics
from pipeline.badrows import original_payload
from pipeline.clock import now_ms as _now_ms
from pipeline.consume import make_reader, topic_partitions
from pipeline.errors import PipelineError
from pipeline.kafka_auth import client_kwargs
from pipeline.partitioning import KeyPartitioner
from pipeline.recover import (
    RUN_KEY,
    BadRow,
    Decision,
    Planner,
    Summary,
    ledger_entry,
    raw_headers,
    run_marker,
    short,
)
from pipeline.settings import Settings
from pipeline.topics import BAD, RAW, RECOVERED

#: Bad rows published per transaction: bounds what an interrupted run leaves to reconcile.
BATCH = 200
#: Seconds without any progress before reading a topic to its end is given up.
_STALL = 60.0


def transactional_id(settings: Settings) -> str:
    """The one transactional id of recovery runs: a new run fences any run still going."""
    return f"{settings.kafka.topic_prefix}{settings.kafka.app_id}.recover"


async def _read(
    consumer: AIOKafkaConsumer, topic: str, start: dict[int, int] | None = None
) -> AsyncIterator[list[ConsumerRecord]]:
    """Batches of ``topic``'s records from ``start`` (default: the beginning) up to its end offsets now.

    With read_committed the end is the last stable offset: open transactions are not waited for.
    """
    parts = await topic_partitions(consumer, topic)
    consumer.assign(parts)
    ends = await consumer.end_offsets(parts)
    await consumer.seek_to_beginning(*parts)
    for tp in parts:
        if start and tp.partition in start:
            consumer.seek(tp, max(start[tp.partition], await consumer.position(tp)))
    last_progress = time.monotonic()
    while True:
        behind = [tp for tp in parts if await consumer.position(tp) < ends[tp]]
        if not behind:
            return
        batch = await consumer.getmany(*behind, timeout_ms=500, max_records=5000)
        records = [r for tp, rs in batch.items() for r in rs if r.offset < ends[tp]]
        if records:
            last_progress = time.monotonic()
            yield records
        elif time.monotonic() - last_progress > _STALL:
            raise PipelineError(f"reading {topic} made no progress for {_STALL:.0f} s (is the broker up?)")


@dataclass
class Ledger:
    """What the ledger topic says: recovered inputs and the marker of the last run."""

    recovered: dict[str, dict[str, Any]] = field(default_factory=dict)
    marker: dict[str, Any] | None = None


async def read_ledger(settings: Settings, topic: str) -> Ledger:
    """The committed ledger (read_committed: records of aborted or open transactions are not in it)."""
    ledger = Ledger()
    consumer = make_reader(settings, "read_committed")
    await consumer.start()
    try:
        async for records in _read(consumer, topic):
            for record in records:
                if record.key == RUN_KEY:
                    ledger.marker = None if record.value is None else orjson.loads(record.value)
                elif record.value is None:
                    ledger.recovered.pop(record.key.decode(), None)
                else:
                    ledger.recovered[record.key.decode()] = orjson.loads(record.value)
    finally:
        await consumer.stop()
    return ledger


async def raw_end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The high watermark of every partition of the raw topic (records of open transactions included)."""
    consumer = make_reader(settings, "read_uncommitted")
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, topic)
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(parts)).items()}
    finally:
        await consumer.stop()


class Publisher:
    """Publishes repaired payloads with their ledger entries, one Kafka transaction per batch."""

    def __init__(self, settings: Settings, raw_topic: str, ledger_topic: str) -> None:
        self.raw_topic = raw_topic
        self.ledger_topic = ledger_topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            transactional_id=transactional_id(settings),
            acks="all",
            linger_ms=5,
            max_request_size=16 * 1024 * 1024,
            partitioner=KeyPartitioner(),
            **client_kwargs(settings),
        )

    async def start(self) -> None:
        """Start the producer: this fences (and aborts the open transaction of) any earlier run."""
        await self.producer.start()

    async def stop(self) -> None:
        """Stop the producer."""
        await self.producer.stop()

    async def commit(self, decisions: list[Decision], ledger: dict[bytes, dict[str, Any]]) -> None:
        """In one transaction: each decision's payload to the raw topic, its ledger entry, and ``ledger``."""
        futures: list[asyncio.Future[Any]] = []
        try:
            await self._commit(decisions, ledger, futures)
        except ProducerFenced:
            raise PipelineError(
                "another `rum-pipeline recover --apply` started and took over; this run stopped "
                "(what it committed stays recovered, the other run carries on)"
            ) from None
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self.producer.abort_transaction()
            raise PipelineError(
                f"publishing failed ({type(exc).__name__}: {exc}); run recover again: it reconciles "
                "what this run left and publishes the rest"
            ) from exc
        finally:
            # On failure every pending send fails the same way: report it once (above), not per send.
            for future in futures:
                future.add_done_callback(_retrieve)

    async def _commit(
        self,
        decisions: list[Decision],
        ledger: dict[bytes, dict[str, Any]],
        futures: list[asyncio.Future[Any]],
    ) -> None:
        producer = self.producer
        await producer.begin_transaction()
        for d in decisions:
            futures.append(await producer.send(self.raw_topic, d.value, key=d.key, headers=raw_headers(d)))
        written = await asyncio.gather(*futures)
        now = _now_ms()
        for decision, meta in zip(decisions, written, strict=True):
            value = orjson.dumps(ledger_entry(decision, (meta.topic, meta.partition, meta.offset), now))
            futures.append(await producer.send(self.ledger_topic, value, key=decision.source.encode()))
        for key, entry in ledger.items():
            futures.append(await producer.send(self.ledger_topic, orjson.dumps(entry), key=key))
        await producer.commit_transaction()


def _quiet_fencing(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Loop exception handler: a fenced run is reported once, not by every internal future of the producer."""
    if not isinstance(context.get("exception"), ProducerFenced):
        loop.default_exception_handler(context)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _topics_present(settings: Settings, names: list[str]) -> set[str]:
    await check_reachable(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **client_kwargs(settings))
    await admin.start()
    try:
        return set(await admin.list_topics()) & set(names)
    finally:
        await admin.close()


async def run_recovery(
    settings: Settings,
    planner: Planner,
    apply: bool = False,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> Summary:
    """Scan the bad topic and plan (dry run) or publish (``apply``) each selected input at most once.

    ``on_progress(scanned, total, published)`` is called after every batch read.
    """
    raw, bad, ledger_topic = settings.topic(RAW), settings.topic(BAD), settings.topic(RECOVERED)
    summary = planner.summary
    asyncio.get_running_loop().set_exception_handler(_quiet_fencing)
    if apply:
        await create_topics(settings)  # the ledger topic may be new to this cluster
    present = await _topics_present(settings, [raw, bad, ledger_topic])
    if bad not in present:
        raise PipelineError(f"the bad topic {bad} does not exist: `rum-pipeline topics create` makes it")
    publisher = Publisher(settings, raw, ledger_topic) if apply else None
    if publisher is not None:
        await publisher.start()  # before reading the ledger: a run still going is fenced first
    try:
        ledger = await read_ledger(settings, ledger_topic) if ledger_topic in present else Ledger()
        planner.recovered = set(ledger.recovered)
        if publisher is not None:
            marker = run_marker(raw, await raw_end_offsets(settings, raw), _now_ms(), finished=False)
            await publisher.commit([], {RUN_KEY: marker})
        await _scan(settings, planner, bad, publisher, on_progress)
        if publisher is not None:
            marker = {**marker, "finished": True}
            await publisher.commit([], {RUN_KEY: marker})
    finally:
        if publisher is not None:
            await publisher.stop()
    return summary


async def _scan(
    settings: Settings,
    planner: Planner,
    bad: str,
    publisher: Publisher | None,
    on_progress: Callable[[int, int, int], None] | None,
) -> None:
    summary = planner.summary
    pending: list[Decision] = []

    async def flush() -> None:
        if publisher is not None and pending:
            await publisher.commit(pending, {})
            summary.published += len(pending)
        pending.clear()

    consumer = make_reader(settings, "read_committed")
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, bad)
        ends, starts = await consumer.end_offsets(parts), await consumer.beginning_offsets(parts)
        total = sum(ends[tp] - starts[tp] for tp in parts)
        async for records in _read(consumer, bad):
            for record in records:
                try:
                    row = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    row = None  # counted as unreadable
                decision = planner.decide(BadRow(record.topic, record.partition, record.offset, row))
                if decision is not None and decision.outcome == "ready":
                    pending.append(decision)
                    if len(pending) >= BATCH:
                        await flush()
            if on_progress:
                on_progress(summary.scanned, total, summary.published)
            if planner.full:
                break
        await flush()
        if on_progress:
            on_progress(summary.scanned, total, summary.published)
    finally:
        await consumer.stop()


# --- the report -------------------------------------------------------------------------------


def render(summary: Summary, console: Console, apply: bool) -> None:
    """Print examples of each outcome, the counts by kind and the summary table."""
    say = functools.partial(console.print, highlight=False, markup=False, soft_wrap=True)
    ready = summary.outcomes["ready"]
    if not apply:
        ready_title = "to publish"
    elif summary.published == ready:
        ready_title = "published"
    else:  # the run stopped before publishing all
        ready_title = f"ready (published: {summary.published} of {ready})"
    for d in summary.examples.get("unreadable", []):
        say(f"unreadable: {d.bad.position}: {d.errors[0][1]}")
    for outcome in ("ready", "still invalid", "patch failed"):
        examples = summary.examples.get(outcome, [])
        if not examples:
            continue
        title = {"ready": ready_title}.get(outcome, outcome)
        say(f"{title} (first {len(examples)} of {summary.outcomes[outcome]}):")
        for d in examples:
            row = d.bad.row
            say(f"  bad row {d.bad.position}  kind {row['kind']}  input {d.source}")
            for error in row["errors"][:3]:
                say(f"    was: {error['path']}: {short(error['message'], 160)}")
            for path, message in d.errors[:3]:
                say(f"    now: {path}: {short(message, 160)}")
            if d.value is not None and d.patched:
                say(f"    patched: {short(d.value.decode('utf-8', 'replace'), 1000)}")
                changes = jsonpatch.make_patch(orjson.loads(original_payload(row)), orjson.loads(d.value))
                say(f"    changes: {short(changes.to_string(), 400)}")
    if summary.ready_by_kind:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary.ready_by_kind.items()))
        say(f"{ready_title} by kind: {kinds}")
    title = "recovery" if apply else "recovery (dry run: nothing published)"
    table = Table(title=title, title_justify="left")
    table.add_column("bad rows")
    table.add_column("count", justify="right")
    outcomes = summary.outcomes
    rows = [
        ("scanned", summary.scanned),
        ("matched the filters", summary.matched),
        ("already recovered", outcomes["already recovered"]),
        ("duplicates (same input)", outcomes["duplicate"]),
        ("patch did not apply", outcomes["patch failed"]),
        ("unreadable (not a bad row)", outcomes["unreadable"]),
        ("still invalid", outcomes["still invalid"]),
        ("fixed by the patch", summary.fixed),
        ("published" if apply else "would be published", summary.published if apply else outcomes["ready"]),
    ]
    for name, count in rows:
        table.add_row(name, f"{count:,}")
    console.print(table)
