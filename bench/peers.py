"""The worker against its peers: a Quix Streams app and a plain pass-through, on the same job.

The job is enrichment alone (RUM_ROLLUPS=false): the same ``--events``
generated actions (fixed seed) read from the raw topic and written, enriched,
to the enriched topic, by one process on the one broker. Each job runs as a
child process of its own, over its own freshly produced copy of the actions
under its own topic prefix, whose topics are deleted afterwards:

  worker       `rum-pipeline worker`, default settings (exactly once), and once
               more with RUM_PROCESSING_GUARANTEE=at_least_once;
  quix         bench/quix_peer.py: a Quix Streams application applying the
               project's own ``Processor.process`` to each message and dropping
               copies by action id as the worker does (ids kept in memory only),
               with Quix's default guarantee (at least once) and with exactly
               once; and once at least once without deduplication, as first
               measured;
  passthrough  bench/passthrough_peer.py: bench/enrich.py's aiokafka consume ->
               produce of the raw messages, unchanged, with no processing (the
               ceiling).

Rate: the outputs over the span from the first output record's timestamp to
the last one's. The output topics are created with
``message.timestamp.type=LogAppendTime`` so that every job's records carry the
broker's append time (Quix Streams would otherwise copy the input records'
timestamps); start-up is not counted. Under exactly once the final commit comes
after the last append and is not counted either, for the worker as for Quix.

CPU per action: the child's own CPU time (user + system, from
/proc/<pid>/stat, sampled every 50 ms by bench/rollups.py's ``CpuSampler``)
from the sample nearest the first output's timestamp to the one nearest the
last output's, divided by the outputs: imports, connecting and joining the
group come before the first output and are left out.

Every run measures every job once, in an order that rotates from run to run;
figures are the median of --runs runs with their spread (min-max), ratios are
taken run by run. The machine is shared: compare the ratios.

    python bench/peers.py [--events 40000] [--runs 3] [--only worker,quix] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from peer_figures import JOBS, figures, measure, rotated, table
from rollups import CpuSampler, bench_env, delete_topics, log_problems, settings_of, tail

from pipeline.admin import create_topics, wait_for_leaders
from pipeline.consume import record_timestamps
from pipeline.demo import stop_worker
from pipeline.generate import TrafficGenerator
from pipeline.kafka_auth import client_kwargs
from pipeline.produce import Message, publish
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, RAW, TOPICS

BENCH = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).with_name("rum-pipeline"))
#: Topic configs that give every output record the broker's append time.
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


def command(job: str, events: int) -> tuple[list[str], dict[str, str]]:
    """The command line of ``job`` and the settings it adds to the environment."""
    if job == "worker":
        return [CLI, "worker"], {}
    if job == "worker-alo":
        return [CLI, "worker"], {"RUM_PROCESSING_GUARANTEE": "at_least_once"}
    if job == "quix":
        return [sys.executable, str(BENCH / "quix_peer.py"), "--guarantee", "at-least-once"], {}
    if job == "quix-eos":
        return [sys.executable, str(BENCH / "quix_peer.py"), "--guarantee", "exactly-once"], {}
    if job == "quix-nodedupe":
        return [
            sys.executable,
            str(BENCH / "quix_peer.py"),
            "--guarantee",
            "at-least-once",
            "--no-dedupe",
        ], {}
    if job == "passthrough":
        return [sys.executable, str(BENCH / "passthrough_peer.py"), "--events", str(events)], {}
    raise ValueError(f"unknown job {job}")


async def create_job_topics(settings: Settings, everything: bool) -> None:
    """The raw topic, and the enriched and bad-row topics with append times; the rest for a worker.

    The pipeline's ``create_topics`` leaves existing topics alone, so the
    output topics created here first keep their append-time config.
    """
    specs = {spec.name: spec for spec in TOPICS}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **client_kwargs(settings))
    await admin.start()
    try:
        new = [
            NewTopic(
                settings.topic(name),
                settings.kafka.partitions,
                settings.kafka.replication_factor,
                topic_configs={**specs[name].kafka_configs(), **(APPEND_TIME if name != RAW else {})},
            )
            for name in (RAW, ENRICHED, BAD)
        ]
        await admin.create_topics(new)
    finally:
        await admin.close()
    await wait_for_leaders(settings, [t.name for t in new])
    if everything:
        await create_topics(settings)


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (from /proc), e.g. the job py-spy runs."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:  # field 4: ppid
                found.append(int(stat.parent.name))
    return found


@contextlib.contextmanager
def child(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` as a child process for the duration of the block (SIGTERM, then SIGKILL).

    The child's own children are stopped first: py-spy writes its profile only
    once the job it runs has exited, and a job left behind would outlive the run.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        kids = children(proc.pid)
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if kids:  # it exits once they did
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        stop_worker(proc, 60)


async def outputs(settings: Settings, expected: int, proc: subprocess.Popen[bytes]) -> list[int]:
    """The enriched records' timestamps once ``expected`` arrived; RuntimeError if ``proc`` fails first."""
    reading = asyncio.ensure_future(record_timestamps(settings, settings.topic(ENRICHED), expected, 300))
    while not reading.done():
        if proc.poll() not in (None, 0):  # the pass-through exits 0 once done: that is no failure
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            raise RuntimeError(f"the job exited with code {proc.returncode}")
        await asyncio.wait([reading], timeout=0.5)
    return reading.result()


def run_job(job: str, messages: list[Message], tmp: Path, profile: Path | None = None) -> dict[str, float]:
    """One job over its own copy of ``messages``: its rate and CPU per action (see the module doc).

    With ``profile``, the job runs under py-spy, which writes its raw profile
    there; the CPU figure is then py-spy's own and means nothing.
    """
    argv, extra = command(job, len(messages))
    if profile is not None:
        pyspy = os.environ.get("PY_SPY", "py-spy")
        argv = [pyspy, "record", "-r", "200", "-f", "raw", "-o", str(profile), "--", *argv]
    env = bench_env(tmp, RUM_ROLLUPS="false", **extra)
    settings = settings_of(env)
    log = tmp / f"{job}-{settings.kafka.app_id}.log"
    try:
        asyncio.run(create_job_topics(settings, everything=job.startswith("worker")))
        summary = asyncio.run(publish(settings, settings.topic(RAW), messages))
        if summary.failed:
            raise RuntimeError(f"{summary.failed} messages were not acknowledged")
        with child(argv, env, log) as proc, CpuSampler(proc.pid) as sampler:
            try:
                stamps = asyncio.run(outputs(settings, len(messages), proc))
            except RuntimeError:
                print(f"{job} exit code {proc.poll()}; log tail:\n{tail(log)}", file=sys.stderr)
                raise
            time.sleep(0.1)  # a CPU sample after the last record
        return measure(stamps, sampler.between(stamps[0], stamps[-1]))
    finally:
        for line in log_problems(log) if log.exists() else ():
            print(f"    [{job} log] {line}")
        asyncio.run(delete_topics(settings))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=40000, help="generated actions per job and run")
    parser.add_argument("--runs", type=int, default=3, help="runs of every job (medians reported)")
    parser.add_argument("--seed", type=int, default=5, help="seed of the generated actions")
    parser.add_argument("--only", default=None, help=f"comma-separated jobs ({', '.join(JOBS)})")
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="OUT",
        help="first profile the exactly-once worker with py-spy in a run of its own, left out of the "
        "figures (raw format, to OUT); PY_SPY names the py-spy binary",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    jobs = list(JOBS)
    if args.only:
        jobs = [j.strip() for j in args.only.split(",") if j.strip()]
        unknown = set(jobs) - set(JOBS)
        if unknown or not jobs:
            parser.error(f"--only: unknown job(s) {', '.join(sorted(unknown))}; known: {', '.join(JOBS)}")
    if args.events < 1 or args.runs < 1:
        parser.error("--events and --runs must be at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    generated = TrafficGenerator(seed=args.seed).messages(args.events)
    messages = [Message(m.key, m.value) for m in generated]
    started = time.monotonic()
    runs: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        if args.py_spy is not None:
            profiled = run_job("worker", messages, Path(tmp_name), args.py_spy)
            print(f"  profiled worker run: {profiled['per_s']:,.0f} actions/s under py-spy -> {args.py_spy}")
        for i in range(args.runs):
            run: dict[str, dict[str, float]] = {}
            for job in rotated(jobs, i):
                run[job] = run_job(job, messages, Path(tmp_name))
                print(
                    f"  run {i + 1} {job:12} {run[job]['per_s']:9,.0f} actions/s "
                    f"{run[job]['cpu_us']:7.1f} µs CPU/action over {run[job]['seconds']:.1f} s"
                )
            runs.append(run)
    result: dict[str, Any] = {"events": args.events, "runs": runs, **figures(runs)}
    print(f"{args.events:,} actions, rollups off, median of {args.runs} (min-max):")
    for line in table(result):
        print(f"  {line}")
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
