"""Failure scenarios on a real broker, each ending with the exactness and completeness checks.

Used by ``bench/chaos.py`` (``make chaos``, full size) and by
``tests/integration/test_chaos.py`` (``make test``, reduced size). Every
scenario gets its own topic prefix, consumer group and state folders, runs
workers as real ``rum-pipeline worker`` processes, disturbs them while
traffic flows, then checks (see :mod:`tests.chaos_helpers`) that the latest
rollups and facet counts equal ground truth computed from the raw topic and
that every raw offset reached the enriched actions or the bad rows.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.demo import stop_worker
from pipeline.topics import RAW
from tests.chaos_helpers import (
    ASSIGNED,
    PROCESSING,
    LocalBroker,
    background_producer,
    coverage,
    delete_topics,
    processing_lines,
    read_all,
    rollup_problems,
    start_worker,
    truth_of,
    wait_until_processing,
)
from tests.kafka_helpers import CLI, isolated_env, settings_from


@dataclass
class Outcome:
    """What one scenario did and what its checks found."""

    name: str
    seconds: float = 0.0
    raw: int = 0
    enriched: int = 0
    bad: int = 0
    duplicates: int = 0
    disruptions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check held."""
        return not self.problems


@dataclass
class Context:
    """Where scenarios run: a scratch folder, the broker, a random source and a progress callback."""

    tmp: Path
    bootstrap: str
    rng: random.Random
    note: Callable[[str], None] = lambda message: None
    check_timeout: float = 300.0
    keep_topics: bool = False

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """A fresh isolated environment for scenario ``name`` (topics created)."""
        folder = self.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        env = isolated_env(
            folder,
            RUM_KAFKA_BOOTSTRAP=self.bootstrap,
            RUM_SESSION_TIMEOUT="8",
            **extra,
        )
        done = subprocess.run([CLI, "topics", "create"], env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"rum-pipeline topics create failed:\n{done.stderr[-2000:]}")
        return env


class Workers:
    """Numbered worker processes of one scenario, each with its own state folder and log per start."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}
        self._starts: dict[int, int] = {}
        self.restarts: list[str] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervised = False

    def start(self, slot: int) -> Path:
        """Start worker ``slot`` (again); return its new log."""
        with self._lock:
            return self._start(slot)

    def _start(self, slot: int) -> Path:
        n = self._starts.get(slot, 0)
        self._starts[slot] = n + 1
        log = self.folder / f"w{slot}-{n}.log"
        env = {**self.env, "RUM_DATA_DIR": str(self.folder / f"w{slot}")}
        self.procs[slot], self.logs[slot] = start_worker(env, log), log
        return log

    def wait(self, slot: int, after: int = 0, marker: str = PROCESSING) -> None:
        """Wait until worker ``slot`` processes, or with ASSIGNED is given partitions (fails if it exits)."""
        wait_until_processing(self.logs[slot], after=after, proc=self.procs[slot], marker=marker)

    def kill(self, slot: int) -> None:
        """SIGKILL worker ``slot`` and reap it."""
        with self._lock:
            proc = self.procs.pop(slot)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, slot: int) -> None:
        """Stop worker ``slot`` the normal way (SIGTERM)."""
        with self._lock:
            proc = self.procs.pop(slot)
        stop_worker(proc, 60)

    def supervise(self) -> None:
        """From now on, restart a worker that exits on its own, as systemd or Kubernetes would."""

        def loop() -> None:
            while not self._stopping.wait(1.0):
                with self._lock:
                    for slot, proc in list(self.procs.items()):
                        if proc.poll() is not None:
                            self.restarts.append(f"worker {slot} exited (code {proc.returncode}), restarted")
                            self._start(slot)

        self._supervised = True
        threading.Thread(target=loop, daemon=True).start()

    def dead(self) -> list[str]:
        """Workers that exited on their own, with the end of their log (none while supervised)."""
        found: list[str] = []
        if self._supervised:
            return found
        with self._lock:
            procs = dict(self.procs)
        for slot, proc in procs.items():
            if proc.poll() is not None:
                tail = "\n".join(self.logs[slot].read_text(errors="replace").splitlines()[-15:])
                found.append(f"worker {slot} exited with code {proc.returncode}:\n{tail}")
        return found

    def stop_all(self) -> None:
        """Stop every worker still running (and the supervision)."""
        self._stopping.set()
        for slot in list(self.procs):
            self.stop(slot)


@contextmanager
def scenario(
    ctx: Context, key: str, title: str, **extra: str
) -> Iterator[tuple[Outcome, dict[str, str], Workers]]:
    """The outcome, environment and workers of one scenario; stops the workers and times it."""
    outcome, started = Outcome(title), time.monotonic()
    env = ctx.env(key, **extra)
    workers = Workers(env, ctx.tmp / key)
    try:
        yield outcome, env, workers
    finally:
        workers.stop_all()
        outcome.seconds = time.monotonic() - started


def finish(ctx: Context, outcome: Outcome, env: dict[str, str], workers: Workers, truth: Any = None) -> None:
    """Run the checks, fill ``outcome``; ``truth`` defaults to ground truth over the raw topic."""
    settings = settings_from(env)
    ctx.note("checking rollups and facets against ground truth")
    if truth is None:
        truth = truth_of(settings, (r.value for r in read_all(settings, settings.topic(RAW))))
    outcome.problems += rollup_problems(settings, truth, ctx.check_timeout)
    ctx.note("checking every raw offset reached enriched or bad")
    cover = coverage(settings)
    outcome.raw, outcome.enriched, outcome.bad = cover.raw, cover.enriched, cover.bad
    outcome.duplicates = cover.duplicates
    outcome.problems += cover.problems()
    outcome.problems += workers.dead()
    if not ctx.keep_topics:
        delete_topics(settings)


def join(thread: Any, produced: list[Any], outcome: Outcome, timeout: float = 600) -> None:
    """Wait for a background producer; one that did not finish is a problem of the outcome."""
    thread.join(timeout)
    if not produced:
        outcome.problems.append("the producer did not finish")


# -- (a) kill -9 -------------------------------------------------------------------------------


def kill_workers(ctx: Context, actions: int, kills: int, rate: float = 2000) -> Outcome:
    """Two workers; ``kills`` times, a random one is SIGKILLed at a random moment and restarted."""
    with scenario(ctx, "kill", "kill -9 workers") as (outcome, env, workers):
        for slot in (0, 1):
            workers.start(slot)
        thread, produced = background_producer(env, actions, seed=33, rate=rate)
        for n in range(kills):
            slot = ctx.rng.randrange(2)
            workers.wait(slot)
            pause = ctx.rng.uniform(0.5, 4)
            time.sleep(pause)
            ctx.note(f"kill -9 of worker {slot} ({n + 1}/{kills})")
            workers.kill(slot)
            outcome.disruptions.append(f"kill -9 worker {slot} {pause:.1f} s after it took partitions")
            workers.start(slot)
        join(thread, produced, outcome)
        finish(ctx, outcome, env, workers)
    return outcome


# -- (b) broker outage -------------------------------------------------------------------------


def broker_outage(
    ctx: Context,
    broker: LocalBroker,
    actions: int,
    outages: int = 1,
    downtime: float = 10,
    rate: float = 1500,
) -> Outcome:
    """The broker is stopped for ``downtime`` s and started again, ``outages`` times, mid-stream.

    Expected of a worker: it rides a short outage out (its Kafka clients
    reconnect) or, when a request outlasts its timeout (aiokafka's 40 s, e.g.
    while it restores rollup state for partitions assigned as the broker comes
    back), it exits with an error, and its supervisor (systemd, Kubernetes)
    starts it again. It must not hang, lose or double-count anything. The
    scenario plays the supervisor, restarts exited workers at once and reports
    each restart. The producer keeps sending through the outage; what the
    broker acknowledged is read back from the raw topic as the input.
    """
    with scenario(ctx, "broker", "broker stop/start") as (outcome, env, workers):
        for slot in (0, 1):
            workers.start(slot)
        thread, produced = background_producer(env, actions, seed=44, rate=rate, allow_failures=True)
        for slot in (0, 1):
            workers.wait(slot)
        workers.supervise()
        for n in range(outages):
            time.sleep(ctx.rng.uniform(2, 5))
            ctx.note(f"broker down for {downtime:.0f} s ({n + 1}/{outages})")
            down = time.monotonic()
            broker.stop()
            time.sleep(downtime)
            broker.start()
            outcome.disruptions.append(f"broker unreachable for {time.monotonic() - down:.0f} s")
        join(thread, produced, outcome)
        finish(ctx, outcome, env, workers)
        outcome.disruptions += workers.restarts
    return outcome


# -- (c) rebalance -----------------------------------------------------------------------------


def rebalance(ctx: Context, actions: int, cycles: int = 1, rate: float = 1500) -> Outcome:
    """A worker joins mid-stream, then the oldest one leaves; ``cycles`` times (two rebalances each)."""
    with scenario(ctx, "rebalance", "worker added/removed") as (outcome, env, workers):
        workers.start(0)
        thread, produced = background_producer(env, actions, seed=55, rate=rate)
        workers.wait(0)
        for n in range(cycles):
            time.sleep(ctx.rng.uniform(1, 3))
            newcomer = n + 1
            ctx.note(f"worker {newcomer} joins ({n + 1}/{cycles})")
            workers.start(newcomer)
            # Given partitions is the mark here: traffic may be over by now.
            workers.wait(newcomer, marker=ASSIGNED)
            outcome.disruptions.append(f"worker {newcomer} joined")
            time.sleep(ctx.rng.uniform(1, 3))
            oldest = min(workers.procs)
            ctx.note(f"worker {oldest} leaves ({n + 1}/{cycles})")
            seen = processing_lines(workers.logs[newcomer], ASSIGNED)
            workers.stop(oldest)
            outcome.disruptions.append(f"worker {oldest} left")
            # The one left takes over the partitions of the one that left.
            workers.wait(newcomer, after=seen, marker=ASSIGNED)
        join(thread, produced, outcome)
        finish(ctx, outcome, env, workers)
    return outcome


def describe(outcome: Outcome) -> dict[str, Any]:
    """The outcome as plain data, for JSON reports."""
    return orjson.loads(orjson.dumps(outcome.__dict__))
