"""Running the intake: the HTTP server, the Kafka connection, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web

from pipeline.errors import PipelineError
from pipeline.intake.metrics import IntakeMetrics
from pipeline.intake.server import create_app, runner_options
from pipeline.intake.sink import KafkaSink
from pipeline.settings import Settings

log = logging.getLogger("rum.intake")


class RepeatLimiter(logging.Filter):
    """Lets one message through at most once every ``interval`` seconds and says how many it held back.

    While a broker is down, aiokafka's producer retries its metadata without
    pausing and logs two errors each time, and a warning for every batch it
    cannot send: thousands of lines a second that say nothing new and bury
    the intake's own messages.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat within the interval; otherwise True, naming the repeats held back."""
        text = record.getMessage()
        key = (record.name, record.levelno, text)
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg, record.args = f"{text} ({seen[1]} more like it in {now - seen[0]:.0f} s)", ()
        if len(self._seen) > 1000:  # many distinct messages: forget them rather than grow
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


#: aiokafka's loggers that repeat themselves while a broker is down (a logger's
#: filter sees only the records logged to it, not those of its children).
_CHATTY_LOGGERS = ("aiokafka", "aiokafka.conn", "aiokafka.producer.sender")


def listening_url(host: str, port: int) -> str:
    """The URL the intake announces, with brackets around an IPv6 host."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, finish requests and flush Kafka.

    Prints ``intake: listening on http://HOST:PORT`` on stdout once the socket
    is bound (with the real port when RUM_INTAKE_PORT is 0). Kafka is connected
    and then checked in the background: while it does not answer, requests get
    503 and /healthz says so.
    """
    if not settings.intake.client_tokens:
        log.warning(
            "intake: NO CLIENT TOKENS CONFIGURED - anyone who can reach this intake can write events; "
            "set RUM_INTAKE_CLIENT_TOKENS (token=application_id,...)"
        )
    limiter = RepeatLimiter()
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    try:
        await _serve(settings)
    finally:
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).removeFilter(limiter)


async def _serve(settings: Settings) -> None:
    sink = KafkaSink(settings)
    app = create_app(settings, sink, IntakeMetrics(process=True))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **runner_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, settings.intake.host, settings.intake.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        where = listening_url(settings.intake.host, settings.intake.port)
        raise PipelineError(
            f"cannot listen on {where}: {exc.strerror or exc} (RUM_INTAKE_HOST/PORT)"
        ) from None
    port = settings.intake.port
    # The bound address tells the real port when 0 was asked for.
    if runner.addresses:
        port = runner.addresses[0][1]
    print(f"intake: listening on {listening_url(settings.intake.host, port)}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connecting = asyncio.create_task(sink.run())
    try:
        await stop.wait()
    finally:
        log.info("intake: stopping")
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        await runner.cleanup()  # stops listening, lets running requests finish
        await sink.stop()
