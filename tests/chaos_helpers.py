"""Machinery shared by the crash tests, the chaos tests and ``bench/chaos.py``.

Producing generated traffic, starting and killing workers, stopping and
restarting a local broker, and the two checks every failure scenario ends with:

* the latest rollup and facet-index upserts equal ground truth computed from
  the raw input (:mod:`tests.rollup_truth`), and every one validates;
* no raw action is lost and none is written twice: every raw offset shows up,
  read committed, exactly once as ``pipeline.source`` of an enriched action or
  as ``source`` of a bad row (and at most once on the late topic).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.consume import assign_topics, group_offsets, make_reader
from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, publish
from pipeline.rollups.config import RollupConfig, default_config_path, load_rollup_config
from pipeline.schemas import BAD_ROW, ENRICHED_ACTION, FACET_INDEX, MEASURE_ROLLUP, validate_record
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, FACETS, LATE, RAW, ROLLUPS
from tests.kafka_helpers import CLI, broker_script_env, settings_from
from tests.rollup_truth import (
    Truth,
    facet_mismatches,
    ground_truth,
    latest_records,
    mismatches,
    rollup_table,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG: RollupConfig = load_rollup_config(default_config_path())
#: Log line of a worker that has restored the rollup state of a raw partition it was given
#: (it does so when the first action of that partition arrives).
PROCESSING = "rollup state of partition"
#: Log line of a worker that has been given partitions by a rebalance (traffic or not).
ASSIGNED = "Setting newly assigned partitions"


# -- input -----------------------------------------------------------------------------------


def generated(count: int, seed: int) -> list[Message]:
    """Generated actions dated over the last hour, with 0.5 % malformed ones."""
    start = int(time.time() * 1000) - 3_600_000
    return [
        Message(m.key, m.value, m.malformed)
        for m in TrafficGenerator(seed=seed, start_ms=start, malformed_share=0.005).messages(count)
    ]


def produce(
    env: dict[str, str], count: int, seed: int, rate: float = 0.0, allow_failures: bool = False
) -> list[bytes]:
    """Publish generated actions to the raw topic and return their exact bytes.

    Every message must be acknowledged unless ``allow_failures`` (a broker
    outage may outlast a send); the raw topic itself is then the input to check.
    """
    return produce_messages(env, generated(count, seed), rate, allow_failures)


def produce_messages(
    env: dict[str, str], messages: list[Message], rate: float = 0.0, allow_failures: bool = False
) -> list[bytes]:
    """Publish ``messages`` to the raw topic (paced to ``rate``/s if > 0) and return their bytes."""
    settings = settings_from(env)
    summary = asyncio.run(publish(settings, settings.topic(RAW), messages, rate))
    assert allow_failures or summary.failed == 0, f"{summary.failed} messages were not acknowledged"
    return [m.value for m in messages]


def background_producer(
    env: dict[str, str], count: int, seed: int, rate: float, allow_failures: bool = False
) -> tuple[threading.Thread, list[list[bytes]]]:
    """Produce in a thread; the list receives the payloads once every send was answered."""
    return background_publish(env, generated(count, seed), rate, allow_failures)


def background_publish(
    env: dict[str, str], messages: list[Message], rate: float, allow_failures: bool = False
) -> tuple[threading.Thread, list[list[bytes]]]:
    """Publish ``messages`` in a thread; the list receives their payloads once every send was answered."""
    produced: list[list[bytes]] = []
    thread = threading.Thread(
        target=lambda: produced.append(produce_messages(env, messages, rate, allow_failures)), daemon=True
    )
    thread.start()
    return thread, produced


# -- workers ---------------------------------------------------------------------------------


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A `rum-pipeline worker` child process writing to ``log`` (the caller stops it)."""
    with open(log, "wb") as out:
        return subprocess.Popen([CLI, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_until_processing(
    log: Path,
    timeout: float = 60,
    after: int = 0,
    proc: subprocess.Popen[bytes] | None = None,
    marker: str = PROCESSING,
) -> None:
    """Wait until the worker writing ``log`` has restored the state of a raw partition.

    ``after`` counts earlier such lines to skip: a worker that already processes
    and must be seen to take partitions again after a rebalance. Given its
    ``proc``, a worker that exits fails the wait at once. ``marker`` ASSIGNED
    waits for an assignment instead, which needs no traffic.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if log.exists() and log.read_text(errors="replace").count(marker) > after:
            return
        time.sleep(0.2)
    state = "exited" if proc is not None and proc.poll() is not None else "never started processing"
    raise AssertionError(f"the worker {state}; log:\n{log.read_text(errors='replace')[-3000:]}")


def processing_lines(log: Path, marker: str = PROCESSING) -> int:
    """How many ``marker`` lines (by default: partition states restored) ``log`` holds so far."""
    return log.read_text(errors="replace").count(marker) if log.exists() else 0


# -- a local broker of our own ---------------------------------------------------------------


@dataclass
class LocalBroker:
    """A broker run by ``scripts/broker.sh`` on ``port`` with its state in ``state_dir``."""

    port: int
    state_dir: Path

    @property
    def bootstrap(self) -> str:
        """host:port of the broker."""
        return f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        env = broker_script_env(self.port, self.state_dir)
        done = subprocess.run(
            [str(ROOT / "scripts" / "broker.sh"), command], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/broker.sh {command} failed:\n{done.stderr[-3000:]}")

    def owned(self) -> bool:
        """Whether ``scripts/broker.sh`` started the broker running there (so it may be restarted)."""
        pidfile = self.state_dir / "broker.pid"
        if not pidfile.exists():
            return False
        cmdline = Path(f"/proc/{pidfile.read_text().strip()}/cmdline")
        return cmdline.exists() and b"kafka.Kafka" in cmdline.read_bytes()

    def start(self) -> None:
        """Start it (or reuse it) and wait until it answers."""
        self._script("start")

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM, as an operator or a rolling restart would)."""
        self._script("stop")


async def _delete_topics(prefixes: tuple[str, ...], bootstrap: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefixes)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def delete_topics(settings: Settings) -> None:
    """Delete every topic of ``settings``' prefix and app (faust's internal ones included).

    A long chaos run creates hundreds of partitions; deleting them keeps the
    broker quick to restart.
    """
    prefix = settings.topic("")
    if not prefix:  # without a prefix of its own, this would name every topic of the cluster
        raise ValueError("refusing to delete topics: no topic prefix is set")
    asyncio.run(_delete_topics((prefix, f"{settings.kafka.app_id}-"), settings.bootstrap_servers))


# -- checks ----------------------------------------------------------------------------------


async def read_all_async(
    settings: Settings, topics: list[str], start: dict[int, int] | None = None
) -> list[Any]:
    """Every record of ``topics`` up to their ends, read committed, from ``start`` (partition -> offset)."""
    consumer = make_reader(settings)
    await consumer.start()
    try:
        await assign_topics(consumer, topics)
        for tp in consumer.assignment():
            if start and tp.partition in start:
                consumer.seek(tp, start[tp.partition])
        ends = await consumer.end_offsets(list(consumer.assignment()))
        records: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=20000)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end offsets."""
    return asyncio.run(read_all_async(settings, [topic]))


def raw_payloads(settings: Settings) -> list[bytes]:
    """The values of every record on the raw topic: the input as the broker kept it."""
    return [r.value for r in read_all(settings, settings.topic(RAW))]


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> end offset of ``topic`` now."""

    async def ends() -> dict[int, int]:
        consumer = make_reader(settings)
        await consumer.start()
        try:
            await assign_topics(consumer, [topic])
            found = await consumer.end_offsets(list(consumer.assignment()))
            return {tp.partition: end for tp, end in found.items()}
        finally:
            await consumer.stop()

    return asyncio.run(ends())


def committed_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> offset the workers' consumer group has committed on ``topic`` (absent: none)."""

    found = asyncio.run(group_offsets(settings, settings.kafka.app_id))
    return {tp.partition: offset for tp, offset in found.items() if tp.topic == topic}


@dataclass
class Coverage:
    """What became of the raw records: enriched, bad, duplicated, missing."""

    raw: int
    enriched: int
    bad: int
    duplicates: int
    missing: list[tuple[int, int]]
    invalid: list[str]
    #: Late-topic records of a raw record already routed there.
    late_duplicates: int = 0

    def problems(self) -> list[str]:
        """Missing raw offsets, outputs written twice (exactly once) and records that fail their schema."""
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} raw records neither enriched nor bad, e.g. {self.missing[:5]}")
        if self.duplicates:
            found.append(f"{self.duplicates} raw records enriched or rejected more than once")
        if self.late_duplicates:
            found.append(f"{self.late_duplicates} raw records routed to the late topic more than once")
        return found + self.invalid[:10]


def enriched_by_source(settings: Settings) -> dict[tuple[int, int], dict[str, Any]]:
    """Enriched actions keyed by the (partition, offset) of their raw record (the last copy wins)."""
    return {
        (e["pipeline"]["source"]["partition"], e["pipeline"]["source"]["offset"]): e
        for e in (orjson.loads(r.value) for r in read_all(settings, settings.topic(ENRICHED)))
    }


def coverage(settings: Settings) -> Coverage:
    """Check that every raw offset appears in the enriched actions or the bad rows, all valid."""
    ends = end_offsets(settings, settings.topic(RAW))
    expected = {(p, o) for p, end in ends.items() for o in range(end)}
    seen: list[tuple[int, int]] = []
    invalid: list[str] = []
    counts = {}
    for topic, schema, source in (
        (ENRICHED, ENRICHED_ACTION, lambda r: r["pipeline"]["source"]),
        (BAD, BAD_ROW, lambda r: r["source"]),
    ):
        records = read_all(settings, settings.topic(topic))
        counts[topic] = len(records)
        for record in records:
            value = orjson.loads(record.value)
            errors = validate_record(schema, value)
            if errors:
                invalid.append(f"{topic} record at {record.partition}/{record.offset}: {errors[:2]}")
            where = source(value)
            seen.append((where["partition"], where["offset"]))
    unique = set(seen)
    late = [
        orjson.loads(r.value)["action"]["pipeline"]["source"]
        for r in read_all(settings, settings.topic(LATE))
    ]
    late_sources = [(where["partition"], where["offset"]) for where in late]
    return Coverage(
        raw=len(expected),
        enriched=counts[ENRICHED],
        bad=counts[BAD],
        duplicates=len(seen) - len(unique),
        missing=sorted(expected - unique),
        invalid=invalid,
        late_duplicates=len(late_sources) - len(set(late_sources)),
    )


def truth_of(settings: Settings, payloads: Iterable[bytes]) -> Truth:
    """Ground truth of the default rollup config over ``payloads``."""
    return ground_truth(CONFIG, settings, list(payloads))


def merge_truths(parts: Iterable[Truth]) -> Truth:
    """One truth for input enriched in phases (each with its own settings, e.g. GeoIP database)."""
    total = Truth()
    for part in parts:
        for key, count in part.counts.items():
            total.counts[key] += count
        for key, values in part.values.items():
            total.values[key].extend(values)
        for key, users in part.users.items():
            total.users[key] |= users
        for key, count in part.facets.items():
            total.facets[key] += count
    return total


def rollup_problems(settings: Settings, truth: Truth, timeout: float) -> list[str]:
    """Wait up to ``timeout`` s for rollups and facets to equal ``truth``; what still differs.

    Every latest rollup and facet-index record is validated against its schema too.
    """

    def problems() -> list[str]:
        table = rollup_table(latest_records(settings, settings.topic(ROLLUPS)))
        return mismatches(truth, table) + facet_mismatches(
            truth, latest_records(settings, settings.topic(FACETS))
        )

    found = list(wait_for(problems, timeout))
    for topic, schema in ((ROLLUPS, MEASURE_ROLLUP), (FACETS, FACET_INDEX)):
        for record in latest_records(settings, settings.topic(topic)).values():
            errors = validate_record(schema, record)
            if errors:
                found.append(f"{topic} record fails {schema}: {errors[:2]}")
                break
    return found


def check_rollups(env: dict[str, str], payloads: list[bytes], timeout: float) -> None:
    """Assert that the rollups and facets of ``env``'s topics equal ground truth over ``payloads``."""
    settings = settings_from(env)
    found = rollup_problems(settings, truth_of(settings, payloads), timeout)
    assert not found, "\n".join(found[:20])
