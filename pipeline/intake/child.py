"""An intake as a child process: for tests, benchmarks and scripts that need a real one."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

#: The line `rum-pipeline intake` prints once its socket is bound.
LISTENING = re.compile(rb"intake: listening on (http://\S+)")


@dataclass
class IntakeChild:
    """A running `rum-pipeline intake` process, its URL and its log file."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running_intake(
    env: dict[str, str], log: Path, *, ready: bool = True, timeout: float = 120
) -> Iterator[IntakeChild]:
    """Start `rum-pipeline intake --port 0` with ``env``; stop it (SIGTERM) when the block ends.

    Waits for the listening line and, when ``ready``, for /healthz to say
    Kafka is connected; raises PipelineError with the log if that takes
    longer than ``timeout`` seconds or the process exits.
    """
    from pipeline.demo import stop_worker  # SIGTERM, then SIGKILL after 30 s

    cli = str(Path(sys.executable).with_name("rum-pipeline"))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [cli, "intake", "--port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not (match := LISTENING.search(log.read_bytes())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PipelineError("the intake did not start:\n" + log.read_text(errors="replace"))
            time.sleep(0.05)
        child = IntakeChild(match.group(1).decode(), proc, log)
        while ready and not _healthy(child.url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PipelineError("the intake did not connect to Kafka:\n" + child.output())
            time.sleep(0.2)
        yield child
    finally:
        stop_worker(proc)
