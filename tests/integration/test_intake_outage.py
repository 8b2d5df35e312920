"""A Kafka outage under the intake, on a broker of the test's own (the shared one is never touched).

While the broker is stopped, /healthz and rum_intake_kafka_ready say so, and
requests get 503 with Retry-After at once instead of after the produce
timeout; once it is back, both recover; every event answered 202 is in Kafka.
The timings are printed (run with -s), not asserted: the machine is shared.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from pipeline.intake.child import running_intake
from pipeline.intake.events import Record
from pipeline.intake.sink import KafkaSink, SinkUnavailable
from pipeline.topics import RAW
from tests.integration.test_intake import TOKEN, action, post, sdk_url
from tests.kafka_helpers import broker_script_env, consume, isolated_env, settings_from

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "scripts" / "broker.sh"
#: Generous bounds on waits; the figures the issue asks for (5 s, 1 s) are printed.
PATIENCE = 60


def _free_ports(count: int) -> int:
    """A port P such that P .. P + count - 1 are free (the broker script uses three)."""
    for first in range(19292, 19992, 7):
        taken = False
        for port in range(first, first + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return first
    raise RuntimeError("no three free ports in 19292-19999")


@dataclass
class Broker:
    """A broker of this test alone, run by scripts/broker.sh with its own port and state folder."""

    port: int
    env: dict[str, str]

    def start(self) -> None:
        subprocess.run([str(BROKER), "start"], env=self.env, check=True, capture_output=True, timeout=180)

    def stop(self) -> None:
        subprocess.run([str(BROKER), "stop"], env=self.env, check=True, capture_output=True, timeout=120)

    def kill(self) -> None:
        """Kill it at once (SIGKILL), so the outage starts at a known moment."""
        pid = int((Path(self.env["RUM_BROKER_DIR"]) / "broker.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists() and _zombie(pid) is False:
            time.sleep(0.01)


def _zombie(pid: int) -> bool | None:
    """True when ``pid`` has exited but not been reaped (its parent is the broker script's shell, gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    port = _free_ports(3)
    env = broker_script_env(port, tmp_path / "broker", RUM_BROKER_HEAP="512m")
    broker = Broker(port, env)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()  # only the broker this test started: the script stops nothing else


@dataclass
class Sender:
    """Posts one action per request, one request after another, and records every answer."""

    url: str
    answers: list[tuple[int, int, float, float, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                answer = post(sdk_url(self.url), action(n, f"s-{n}"))
                status, retry = answer.status, answer.headers.get("Retry-After")
            except OSError:
                status, retry = 0, None
            self.answers.append((n, status, started, time.monotonic() - started, retry))
            time.sleep(0.02)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _wait_health(url: str, status: int) -> float:
    """Poll /healthz until it answers ``status``; the time that took."""
    started = time.monotonic()
    while _get(f"{url}/healthz")[0] != status:
        assert time.monotonic() - started < PATIENCE, f"/healthz did not turn {status}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_broker_outage_gives_fast_503s_and_loses_no_acknowledged_event(
    tmp_path: Path, own_broker: Broker
) -> None:
    env = isolated_env(
        tmp_path,
        RUM_KAFKA_BOOTSTRAP=f"127.0.0.1:{own_broker.port}",
        RUM_INTAKE_CLIENT_TOKENS=f"{TOKEN}=*",
        RUM_REPLICATION_FACTOR="1",
    )
    settings = settings_from(env)
    with running_intake(env, tmp_path / "intake.log") as intake:
        sender = Sender(intake.url)
        thread = threading.Thread(target=sender.run, daemon=True)
        thread.start()
        try:
            time.sleep(3)
            own_broker.kill()
            unhealthy_after = _wait_health(intake.url, 503)
            down_metrics = _get(f"{intake.url}/metrics")[1]
            detected_at = time.monotonic()
            time.sleep(3)
            restarting_at = time.monotonic()
            own_broker.start()
            start_took = time.monotonic() - restarting_at
            healthy_after = _wait_health(intake.url, 200)
            time.sleep(2)
        finally:
            sender.stop.set()
            thread.join(PATIENCE)
        output = intake.output()
        (tmp_path / "intake-output.log").write_text(output)  # kept with the test's files

    answers = sender.answers
    acked = {n for n, status, *_ in answers if status == 202}
    during = [a for a in answers if detected_at <= a[2] < restarting_at]
    after = [a for a in answers if a[2] >= restarting_at + start_took + healthy_after]
    print(
        f"\n/healthz 503 {unhealthy_after:.2f} s after the broker was killed; "
        f"broker start took {start_took:.1f} s; /healthz 200 {healthy_after:.1f} s after it was ready; "
        f"{len(during)} requests during the outage, slowest answer {max(a[3] for a in during):.3f} s; "
        f"{len(acked)} of {len(answers)} requests acknowledged; {len(output.splitlines())} log lines"
    )
    assert "rum_intake_kafka_ready 0.0" in down_metrics
    assert during and all(status == 503 and retry == "5" for _, status, _, _, retry in during)
    assert after and all(status == 202 for _, status, *_ in after)
    assert "does not answer" in output and "answers again" in output
    assert "Traceback" not in output
    # aiokafka's retry messages (thousands a second while the broker is down) are held back.
    assert output.count("Unable to update metadata") < 20 and output.count("NodeNotReadyError") < 20

    records = consume(settings, settings.topic(RAW), len(acked), timeout=PATIENCE)
    stored = {orjson.loads(r.value)["context"]["n"] for r in records}
    assert acked <= stored  # every 202 is in Kafka (a 503 may have landed too: the client sends it again)


def test_the_sink_fails_fast_once_its_check_finds_the_broker_gone(tmp_path: Path, own_broker: Broker) -> None:
    """A write waiting for its acknowledgement ends with 503 when the check fails, not after the timeout."""
    env = isolated_env(
        tmp_path, RUM_KAFKA_BOOTSTRAP=f"127.0.0.1:{own_broker.port}", RUM_INTAKE_KAFKA_TIMEOUT="120"
    )
    settings = settings_from(env)
    record = [Record("raw", b"s-1", action(1, "s-1"))]

    async def scenario() -> list[str]:
        sink = KafkaSink(settings)
        await sink.connect()  # the checks are driven by hand: follow() is one of them
        seen = []
        try:
            await sink.write(record, 1)
            assert await sink.follow() and sink.ready
            own_broker.kill()
            waiting = asyncio.create_task(sink.write(record, 2))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # queued, no acknowledgement coming
            assert not await sink.follow() and not sink.ready
            for attempt in (waiting, sink.write(record, 3)):
                with pytest.raises(SinkUnavailable) as refused:
                    await asyncio.wait_for(attempt, 10)  # far less than the 120 s produce timeout
                seen.append(str(refused.value))
            own_broker.start()
            deadline = time.monotonic() + PATIENCE
            while not await sink.follow():
                assert time.monotonic() < deadline, "the sink did not see the broker come back"
                await asyncio.sleep(0.2)
            await asyncio.wait_for(sink.write(record, 4), PATIENCE)
        finally:
            await sink.stop()
        return seen

    seen = asyncio.run(scenario())
    address = f"127.0.0.1:{own_broker.port}"
    assert seen == [f"Kafka at {address} stopped answering", f"Kafka at {address} does not answer"]
    timestamps = {r.timestamp for r in consume(settings, settings.topic(RAW), 2, timeout=PATIENCE)}
    assert {1, 4} <= timestamps  # acknowledged writes are there (2 may be too: it was queued)
