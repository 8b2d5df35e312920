"""Helpers for tests that talk to the real local Kafka broker."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.consume import assign_topics, make_reader
from pipeline.settings import Settings, load_settings
from pipeline.settings_env import child_env, names_of, setting_path


def _setting(dotted: str) -> str | None:
    """A setting from the environment under either of its names, the nested one first."""
    return next((os.environ[n] for n in names_of(setting_path(dotted)) if os.environ.get(n)), None)


#: The cluster an outside user named (kafka.bootstrap), if any; else the local broker's port.
EXTERNAL_BOOTSTRAP = _setting("kafka.bootstrap")
PORT = int(_setting("kafka.port") or "9092")
BOOTSTRAP = EXTERNAL_BOOTSTRAP or f"127.0.0.1:{PORT}"
CLI = str(Path(sys.executable).with_name("rum-pipeline"))


def isolated_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for one test: its own topic prefix, consumer group and state folder."""
    tag = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUM_")}
    env.update(
        RUM_KAFKA_BOOTSTRAP=BOOTSTRAP,
        RUM_TOPIC_PREFIX=f"t{tag}.",
        RUM_APP_ID=f"rum-test-{tag}",
        RUM_DATA_DIR=str(tmp / "state"),
        RUM_WEB_PORT="0",
    )
    env.update(extra)
    return env


def broker_script_env(port: int, state_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for scripts/broker.sh to run a broker of its own on ``port`` in ``state_dir``.

    Both names of kafka.port are replaced and both of kafka.bootstrap removed,
    so a user's nested or flat one cannot send the script to another broker.
    """
    bootstrap = names_of(setting_path("kafka.bootstrap"))
    env = {k: v for k, v in os.environ.items() if k not in bootstrap}
    return {**child_env(env, {"kafka.port": port}), "RUM_BROKER_DIR": str(state_dir), **extra}


def settings_from(env: dict[str, str]) -> Settings:
    """The Settings a process started with ``env`` would see."""
    return load_settings({k: v for k, v in env.items() if k.startswith("RUM_")})


@dataclass
class WorkerProcess:
    """A `rum-pipeline worker` running as a child process."""

    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        """The end of the worker's output, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop it (SIGKILL if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def run_worker(env: dict[str, str], log: Path, name: str = "worker") -> Iterator[WorkerProcess]:
    """Start a worker for the duration of the block."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [CLI, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = WorkerProcess(proc, log)
    try:
        yield worker
    finally:
        worker.stop()


async def _consume(settings: Settings, topic: str, expected: int, timeout: float) -> list:
    consumer = make_reader(settings)
    await consumer.start()
    try:
        await assign_topics(consumer, [topic])
        deadline = time.monotonic() + timeout
        records: list = []
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10000)
            for msgs in batch.values():
                records.extend(msgs)
        # Give stray extra records a moment to show up: more than expected is a failure too.
        batch = await consumer.getmany(timeout_ms=1000)
        for msgs in batch.values():
            records.extend(msgs)
        return records
    finally:
        await consumer.stop()


def consume(settings: Settings, topic: str, expected: int, timeout: float = 60) -> list:
    """Records of ``topic`` from the beginning, until ``expected`` arrived or the timeout."""
    return asyncio.run(_consume(settings, topic, expected, timeout))


def kcat() -> str:
    """Path of kcat (installed by `make test`)."""
    path = shutil.which("kcat")
    if not path:
        raise RuntimeError("kcat is not installed: run `make test`, which installs it")
    return path


def kcat_lines(topic: str, fmt: str = "%s\n") -> list[bytes]:
    """Every record of ``topic`` read by kcat from the beginning to the end, one ``fmt`` line each."""
    out = subprocess.run(
        [kcat(), "-C", "-b", BOOTSTRAP, "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt],
        capture_output=True,
        timeout=60,
        check=False,
    ).stdout
    return [line for line in out.split(b"\n") if line]


async def new_topic(settings: Settings, name: str, partitions: int = 1) -> str:
    """Create the prefixed topic ``name`` with ``partitions`` partitions; return its full name.

    For tests of one Kafka-facing module that need a single topic, not the pipeline's whole set.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from pipeline.admin import wait_for_leaders

    topic = settings.topic(name)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    await wait_for_leaders(settings, [topic])
    return topic
