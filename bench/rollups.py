"""Rollup benchmark: what maintaining facets and rollups costs one worker, and how fresh they are.

(a) Throughput: raw -> enriched actions/s of one `rum-pipeline worker` with the
    rollups on (config/rollups.yaml, or RUM_ROLLUPS_CONFIG) beside one with
    RUM_ROLLUPS=false, alternating in the same run. Each worker reads its own
    freshly produced copy of the same generated traffic under its own topic
    prefix, consumer group and state folder. The traffic's dates end now and
    spread over ``--spans``, one measurement per span, the first one the
    headline: 30 s makes 150,000 actions as dense in event time as live
    traffic at about the rate one worker sustains with the rollups on
    (5,000/s); 1 h spreads the same actions thinly (42 per second of event
    time) over 60 one-minute windows, like a backfill of a quiet shop, so
    many more partials carry few actions each. A run lasts well beyond the
    5 s flush period of a worker in a backlog: with runs of a few seconds,
    the wait for the last flush would be most of the measured time. Rates
    run from the first enriched record's timestamp, so process start-up is
    not counted, to the last one's, or with the rollups on to the last
    rollup or facet-index upsert once every action's partials are flushed and
    merged (``rollups_done``): the rollup work for the actions is part of the
    rate. The target is rollups on >= 0.7x rollups off.
    The worker's CPU time per action over the same span is reported too: on
    a shared machine it varies far less than rates.
(b) Freshness: with a worker running (rollups on), `checkout` actions are
    produced at a steady rate, each carrying a unique ``context.probe_id``; a
    rollup ``latency_probe`` grouped by that id (added to the default rollups
    in a temporary config) makes every probe show up in its own upsert on the
    rollup topic. Latency = first upsert of the probe's group - produce time
    (taken just before the send), in ms, from the upsert record's timestamp
    (the worker's send time) and from the local receive time.

Figures are medians with their spread (min-max) or percentiles; the machine is
shared, so compare the on/off ratio, measured in the same run, not the
absolute rates. Every worker's log is scanned for errors.

    python bench/rollups.py [--events 150000] [--runs 3] [--spans 30s,1h] [--rate 500] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.admin import create_topics
from pipeline.aiokafka_private import update_metadata
from pipeline.clock import now_ms
from pipeline.consume import assign_topics, group_offsets, make_reader, record_timestamps
from pipeline.demo import stop_worker
from pipeline.generate import TrafficGenerator
from pipeline.kafka_auth import client_kwargs
from pipeline.produce import Message, make_producer, publish
from pipeline.rollups.config import default_config_path, parse_duration
from pipeline.settings import Settings, load_settings
from pipeline.settings_env import child_env, settings_environ
from pipeline.topics import ENRICHED, FACETS, PARTIALS, RAW, ROLLUPS, topic_specs

CLI = str(Path(sys.executable).with_name("rum-pipeline"))
#: Log lines that deserve a look after a run.
SUSPICIOUS = ("Traceback", "ERROR", "CRITICAL", "Crashed", "crashed")
#: The throughput figures of a run: all records, the later half of them, worker CPU µs per action.
KINDS = ("whole", "steady", "cpu_us")


# -- shared with bench/memory.py ----------------------------------------------------------


def bench_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of one worker: its own topic prefix, consumer group and state folder."""
    tag = uuid.uuid4().hex[:8]
    # child_env replaces both names of each setting: a user's RUM_KAFKA__TOPIC_PREFIX neither clashes
    # with nor overrides the prefix set here.
    own = {
        "kafka.topic_prefix": f"bench{tag}.",
        "kafka.app_id": f"bench-{tag}",
        "worker.data_dir": str(tmp / tag),
        "worker.web_port": "0",
    }
    return child_env(os.environ, {**own, **extra})


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a worker started with ``env`` sees."""
    return load_settings(settings_environ(env))


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `rum-pipeline worker` child process for the duration of the block (SIGTERM, then SIGKILL)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [CLI, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop_worker(proc, 60)


@contextlib.contextmanager
def watched_worker(
    env: dict[str, str], log: Path, label: str, settings: Settings, keep: bool
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`worker`, plus its log tail when the block fails, its log's problems, and topic clean-up."""
    try:
        with worker(env, log) as proc:
            try:
                yield proc
            except RuntimeError:
                print(f"worker exit code {proc.poll()}; log tail:\n{tail(log)}", file=sys.stderr)
                raise
    finally:
        for line in log_problems(log) if log.exists() else ():
            print(f"    [{label} log] {line}")
        if not keep:
            asyncio.run(delete_topics(settings))


def log_problems(log: Path, limit: int = 20) -> list[str]:
    """Lines of a worker log that look like errors (at most ``limit``)."""
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if any(word in line for word in SUSPICIOUS)][:limit]


def tail(log: Path, lines: int = 30) -> str:
    """The end of a worker log."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def delete_topics(settings: Settings, *extra: str) -> None:
    """Delete every topic of ``settings``' prefix that the pipeline creates, faust's own, and ``extra`` ones.

    The broker's disk is finite: a benchmark leaves none of its topics behind.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = {name for name, _spec in topic_specs(settings)} | set(extra)
        faust_own = f"{settings.kafka.app_id}-"  # e.g. the assignor's leader topic
        names = sorted(name for name in existing if name in wanted or name.startswith(faust_own))
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def dated_traffic(events: int, seed: int, span: str) -> list[Message]:
    """``events`` generated actions whose dates spread over ``span`` (e.g. ``30s``) and end now."""
    span_ms = parse_duration(span) * 1000
    generator = TrafficGenerator(seed=seed, start_ms=now_ms() - span_ms, span_ms=span_ms)
    return [Message(m.key, m.value) for m in generator.messages(events)]


def summarize(values: list[float]) -> dict[str, float]:
    """Median and spread of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- (a) throughput -----------------------------------------------------------------------


class CpuSampler:
    """Samples a process's CPU time (user + system, s) against the wall clock (ms), every 50 ms.

    The machine is shared: a worker's CPU time per action is far less disturbed
    by other load than its rate, so it is reported beside the rates.
    """

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/stat")
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                fields = self.path.read_text().rsplit(")", 1)[1].split()
            except OSError:
                return
            cpu = (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime
            self.samples.append((now_ms(), cpu))
            self._stop.wait(0.05)

    def between(self, first_ms: int, last_ms: int) -> float:
        """CPU seconds used from the sample nearest ``first_ms`` to the one nearest ``last_ms``."""
        if not self.samples:
            return float("nan")
        start = min(self.samples, key=lambda s: abs(s[0] - first_ms))
        end = min(self.samples, key=lambda s: abs(s[0] - last_ms))
        return end[1] - start[1]


async def enriched_stamps(settings: Settings, expected: int, timeout: float) -> list[int]:
    """The enriched records' timestamps (ms, sorted), once ``expected`` arrived."""
    return await record_timestamps(settings, settings.topic(ENRICHED), expected, timeout)


def rates(stamps: list[int], done_ms: int | None = None) -> tuple[float, float]:
    """(whole, steady) actions/s from the enriched records' timestamps.

    ``whole`` is every record over first-to-last timestamp; ``steady`` is the
    later half of the records over their own span, which leaves out start-up
    work such as restoring the rollup state of each newly assigned partition.
    ``done_ms``, when later than the last record, ends both spans instead: the
    moment the rollup work for those actions was written too.
    """
    end = max(stamps[-1], done_ms or 0)
    half = stamps[len(stamps) // 2 :]
    return _rate(len(stamps), stamps[0], end), _rate(len(half), half[0], end)


async def _markers_only(reader: Any, tp: Any, start: int) -> bool:
    """True when a read-committed reader gets no record of ``tp`` from ``start`` on.

    Exactly once, the workers write the partials in transactions, one per raw
    partition, and each commit adds a marker to every partials partition its
    transaction wrote: the partition's end is then past markers that no
    consumer ever gets, and the merge agent's committed offset (after the last
    record it took) stops short of them. ``end_offsets`` of a read-committed
    reader stops below any open transaction, so what it reports is readable.
    """
    reader.seek(tp, start)
    for _ in range(3):
        if (await reader.getmany(tp, timeout_ms=300)).get(tp):
            return False
    return True


async def rollups_done(settings: Settings, timeout: float) -> int:
    """When the worker's rollup work for everything it enriched was on Kafka (ms).

    A rollup worker flushes the partials of held actions only every flush
    interval (up to 5 while it works through a backlog), and the merge agent
    writes the upserts after that, so the last enriched record is not the
    end of its work. The worker commits raw offsets after each flush and
    partials offsets after their upserts: once both cover their topics' ends,
    the last upsert (rollup or facet-index record) is the end.
    """
    reader = make_reader(settings)
    await reader.start()
    try:
        await assign_topics(reader, [settings.topic(RAW), settings.topic(PARTIALS)])
        deadline = time.monotonic() + timeout
        while True:
            # Committed first: ends read afterwards can only be later, never make it look done early.
            committed = await group_offsets(settings, settings.kafka.app_id)
            ends = await reader.end_offsets(list(reader.assignment()))
            behind = []
            for tp, end in ends.items():
                done = committed.get(tp, 0)
                if end > done and not await _markers_only(reader, tp, done):
                    behind.append(tp)
            if not behind:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"rollup work not committed within {timeout:.0f} s: {behind[:3]}")
            await asyncio.sleep(0.2)
        await assign_topics(reader, [settings.topic(ROLLUPS), settings.topic(FACETS)])
        ends = await reader.end_offsets(list(reader.assignment()))
        last = 0
        for tp, end in ends.items():
            if end:
                reader.seek(tp, end - 1)
                for record in (await reader.getmany(tp, timeout_ms=5000)).get(tp, []):
                    last = max(last, record.timestamp)
        if not last:
            raise RuntimeError("no rollup or facet-index upsert found after the rollup work was committed")
        return last
    finally:
        await reader.stop()


def _rate(count: int, first_ms: int, last_ms: int) -> float:
    """Records per second over a span of record timestamps."""
    span = (last_ms - first_ms) / 1000
    return count / span if span > 0 else float("inf")


def throughput_run(
    messages: list[Message], rollups: bool, tmp: Path, keep: bool
) -> tuple[float, float, float]:
    """One worker over its own copy of ``messages``: (whole, steady) actions/s, CPU µs/action.

    The CPU time is the worker's, from its first enriched record to its last,
    or with the rollups on to the end of their work (``rollups_done``); the
    broker's is excluded.
    """
    env = bench_env(tmp, RUM_ROLLUPS="true" if rollups else "false")
    settings = settings_of(env)
    asyncio.run(create_topics(settings))
    label = "on" if rollups else "off"
    log = tmp / f"worker-{label}-{settings.kafka.app_id}.log"
    summary = asyncio.run(publish(settings, settings.topic("rum.actions.raw"), messages))
    if summary.failed:
        if not keep:
            asyncio.run(delete_topics(settings))
        raise RuntimeError(f"{summary.failed} messages were not acknowledged")
    with watched_worker(env, log, label, settings, keep) as proc, CpuSampler(proc.pid) as cpu:
        stamps = asyncio.run(enriched_stamps(settings, len(messages), 300))
        done = asyncio.run(rollups_done(settings, 120)) if rollups else stamps[-1]
        time.sleep(0.1)  # a sample after the last record
        cpu_us = cpu.between(stamps[0], max(done, stamps[-1])) / len(stamps) * 1e6
        return (*rates(stamps, done), cpu_us)


# -- (b) freshness ------------------------------------------------------------------------


def probe_config(tmp: Path) -> Path:
    """The default rollup config plus ``latency_probe``, one group per ``context.probe_id``."""
    config = yaml.safe_load(default_config_path().read_text())
    config["rollups"].append(
        {
            "name": "latency_probe",
            "filter": "@action.target.name:checkout",
            "group_by": ["context.probe_id"],
            "aggregations": ["count"],
            "intervals": ["1m"],
        }
    )
    path = tmp / "rollups-probe.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def probe_message(base: Message, probe_id: str, date_ms: int, value: float) -> Message:
    """A realistic generated action turned into a ``checkout`` carrying ``probe_id``, dated now."""
    event = orjson.loads(base.value)
    event["date"] = date_ms
    event["action"]["target"]["name"] = "checkout"
    event["context"] = {"value": value, "currency": "EUR", "items": ["probe"], "probe_id": probe_id}
    return Message(base.key, orjson.dumps(event))


async def measure_latency(
    settings: Settings, bases: list[Message], rate: float, seconds: float, timeout: float
) -> dict[str, Any]:
    """Produce probes at ``rate``/s for ``seconds``; latencies of their first rollup upserts."""
    consumer = make_reader(settings)
    await consumer.start()
    await assign_topics(consumer, [settings.topic(ROLLUPS)])
    producer = make_producer(settings)
    await producer.start()
    seen: dict[str, tuple[int, int]] = {}  # probe id -> (upsert timestamp, local receive), ms
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            received = now_ms()
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue
                    upsert = orjson.loads(record.value)
                    if upsert.get("rollup") != "latency_probe":
                        continue
                    probe = upsert["group"].get("context.probe_id")
                    if probe is not None and probe not in seen:
                        seen[probe] = (record.timestamp, received)

    watcher = asyncio.create_task(watch())
    raw = settings.topic("rum.actions.raw")
    sent: dict[str, int] = {}
    try:
        # Warm-up: one probe per raw partition, until each made it through (every
        # partition assigned and its rollup state restored).
        warm_started = time.monotonic()
        partitions = sorted(producer.client.cluster.partitions_for_topic(raw) or ())
        if not partitions:
            await update_metadata(producer.client)
            partitions = sorted(producer.client.cluster.partitions_for_topic(raw) or ())
        for p in partitions:
            warm = probe_message(bases[p % len(bases)], f"warm-{p}", now_ms(), 1.0)
            await producer.send_and_wait(raw, warm.value, key=warm.key, partition=p)
        while sum(1 for probe in seen if probe.startswith("warm-")) < len(partitions):
            if time.monotonic() - warm_started > timeout:
                raise RuntimeError(f"warm-up probes did not all reach the rollup topic in {timeout} s")
            await asyncio.sleep(0.2)
        warmup = time.monotonic() - warm_started
        total = int(rate * seconds)
        started = time.monotonic()
        pending = []
        for i in range(total):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            probe = f"p-{i:07d}"
            date = now_ms()
            message = probe_message(bases[i % len(bases)], probe, date, float(10 + i % 90))
            sent[probe] = date
            pending.append(await producer.send(raw, message.value, key=message.key))
        await asyncio.gather(*pending)
        produce_seconds = time.monotonic() - started
        deadline = time.monotonic() + timeout
        while len([p for p in sent if p in seen]) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await watcher
        await producer.stop()
        await consumer.stop()
    found = [p for p in sent if p in seen]
    by_stamp = [seen[p][0] - sent[p] for p in found]
    by_receive = [seen[p][1] - sent[p] for p in found]
    result: dict[str, Any] = {
        "probes": len(sent),
        "found": len(found),
        "produce_rate": len(sent) / produce_seconds,
        "warmup_s": warmup,
    }
    # The median of each quarter of the probes, in produce order: a backlog shows as a rising trend.
    quarter = max(1, len(by_stamp) // 4)
    result["p50_by_quarter_ms"] = [
        percentile(by_stamp[q * quarter : (q + 1) * quarter], 50) for q in range(4) if by_stamp[q * quarter :]
    ]
    for name, values in (("upsert_timestamp_ms", by_stamp), ("received_ms", by_receive)):
        if values:
            result[name] = {
                "p50": percentile(values, 50),
                "p99": percentile(values, 99),
                "max": max(values),
                "min": min(values),
            }
    return result


def latency_run(tmp: Path, rate: float, seconds: float, keep: bool) -> dict[str, Any]:
    """Start a worker with the probe rollup, measure, stop it."""
    env = bench_env(tmp, RUM_ROLLUPS="true", RUM_ROLLUPS_CONFIG=str(probe_config(tmp)))
    settings = settings_of(env)
    asyncio.run(create_topics(settings))
    bases = [Message(m.key, m.value) for m in TrafficGenerator(seed=11).messages(2000)]
    log = tmp / f"worker-latency-{settings.kafka.app_id}.log"
    with watched_worker(env, log, "latency", settings, keep):
        return asyncio.run(measure_latency(settings, bases, rate, seconds, 60))


# -- main ---------------------------------------------------------------------------------


def throughput_section(events: int, runs: int, seed: int, span: str, tmp: Path, keep: bool) -> dict[str, Any]:
    """Alternating on/off runs over the same traffic; prints and returns the figures."""
    print(f"actions dated over the last {span}:")
    messages = dated_traffic(events, seed, span)
    rates: dict[str, list[float]] = {f"{mode} {part}": [] for mode in ("on", "off") for part in KINDS}
    for i in range(runs):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        run = {mode: throughput_run(messages, mode == "on", tmp, keep) for mode in order}
        for mode in order:
            for part, rate in zip(KINDS, run[mode], strict=True):
                rates[f"{mode} {part}"].append(rate)
        for part in KINDS:
            on_off = zip(rates[f"on {part}"], rates[f"off {part}"], strict=True)
            # For CPU per action the ratio is off / on: the throughput ratio the CPU cost implies.
            rates[f"ratio {part}"] = [off / on if part == "cpu_us" else on / off for on, off in on_off]
        on, off = run["on"], run["off"]
        print(
            f"  run {i + 1} ({' then '.join(order)}): whole: on {on[0]:,.0f}/s off {off[0]:,.0f}/s "
            f"ratio {on[0] / off[0]:.2f}; steady: ratio {on[1] / off[1]:.2f}; "
            f"worker CPU: on {on[2]:.0f} µs/action off {off[2]:.0f} µs/action, off/on {off[2] / on[2]:.2f}"
        )
    print(f"one worker, rollups on vs off ({events} actions, median of {runs}, min-max):")
    print(f"  {'':13} {'whole run':>24}   {'later half (steady)':>24}   {'worker CPU per action':>26}")
    for label, mode in (("rollups on", "on"), ("rollups off", "off")):
        cells = []
        for part in KINDS:
            v = rates[f"{mode} {part}"]
            unit = " µs" if part == "cpu_us" else "/s"
            cells.append(f"{statistics.median(v):8,.0f}{unit} ({min(v):,.0f}-{max(v):,.0f})")
        print(f"  {label:13} {cells[0]:>24}   {cells[1]:>24}   {cells[2]:>26}")
    cells = []
    for part in KINDS:
        v = rates[f"ratio {part}"]
        cells.append(f"{statistics.median(v):8.2f}   ({min(v):.2f}-{max(v):.2f})")
    print(f"  {'ratio on/off':13} {cells[0]:>24}   {cells[1]:>24}   {cells[2]:>26} (off/on)")
    whole = statistics.median(rates["ratio whole"])
    print(f"  target on/off >= 0.70 (whole run): {'met' if whole >= 0.7 else 'NOT met'}")
    return {"events": events, "span": span, **{name: summarize(values) for name, values in rates.items()}}


def latency_section(rate: float, seconds: float, tmp: Path, keep: bool) -> dict[str, Any]:
    """The freshness run; prints and returns the figures."""
    latency = latency_run(tmp, rate, seconds, keep)
    print(
        f"produce -> first rollup upsert of its group ({latency['found']} of {latency['probes']} "
        f"probes found, produced at {latency['produce_rate']:,.0f}/s; warm-up {latency['warmup_s']:.1f} s):"
    )
    for label, name in (
        ("upsert record timestamp", "upsert_timestamp_ms"),
        ("upsert received here", "received_ms"),
    ):
        if name in latency:
            s = latency[name]
            print(
                f"  {label:24} p50 {s['p50']:7.0f} ms   p99 {s['p99']:7.0f} ms"
                f"   (min {s['min']:.0f}, max {s['max']:.0f})"
            )
    quarters = ", ".join(f"{v:.0f}" for v in latency["p50_by_quarter_ms"])
    print(f"  p50 of each quarter of the probes, in produce order: {quarters} ms")
    return {"rate": rate, "seconds": seconds, **latency}


def headline(report: dict[str, Any]) -> dict[str, float | None]:
    """The machine-readable summary: median rates and ratio of the whole runs, latency percentiles in s."""
    throughput = report.get("throughput", {})
    latency = report.get("latency", {}).get("upsert_timestamp_ms", {})

    def median(name: str) -> float | None:
        return throughput[name]["median"] if name in throughput else None

    return {
        "on_per_s": median("on whole"),
        "off_per_s": median("off whole"),
        "ratio": median("ratio whole"),
        "latency_p50_s": latency["p50"] / 1000 if "p50" in latency else None,
        "latency_p99_s": latency["p99"] / 1000 if "p99" in latency else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=150000, help="actions per throughput run")
    parser.add_argument("--runs", type=int, default=3, help="on/off pairs; medians are reported")
    parser.add_argument(
        "--spans",
        default="30s,1h",
        help="comma-separated spans the throughput runs' action dates cover, ending now (the first is "
        "the headline; see above)",
    )
    parser.add_argument("--rate", type=float, default=500, help="probes/s for the latency part (0 = skip)")
    parser.add_argument("--seconds", type=float, default=20, help="how long probes are produced")
    parser.add_argument("--seed", type=int, default=5, help="seed of the generated traffic")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics afterwards")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the figures to this JSON file: on_per_s, off_per_s, ratio (medians over the "
        "whole runs), latency_p50_s, latency_p99_s (null when that part was skipped), then the details",
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep the worker logs in this folder")
    args = parser.parse_args()
    spans = [span.strip() for span in args.spans.split(",") if span.strip()]
    try:
        for span in spans:
            parse_duration(span)
    except ValueError as exc:
        parser.error(f"--spans: {exc}")
    if not spans:
        parser.error("--spans: give at least one span, e.g. 10s")
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up when piped to a file
    # Metadata warnings about topics this benchmark has just deleted are expected.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    report: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.events and args.runs:
            sections = [
                throughput_section(args.events, args.runs, args.seed, span, tmp, args.keep_topics)
                for span in spans
            ]
            report["throughput"] = sections[0]
            report["throughput_spans"] = sections
        if args.rate > 0 and args.seconds > 0:
            report["latency"] = latency_section(args.rate, args.seconds, tmp, args.keep_topics)
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("worker-*.log"):
                shutil.copyfile(log, args.logs / log.name)
    report["seconds"] = time.monotonic() - started
    print(f"total {report['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({**headline(report), **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
