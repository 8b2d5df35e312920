"""Running the intake: the HTTP server, the Kafka connection, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from pipeline.errors import PipelineError
from pipeline.intake.metrics import IntakeMetrics
from pipeline.intake.server import create_app, runner_options
from pipeline.intake.sink import KafkaSink
from pipeline.settings import Settings

log = logging.getLogger("rum.intake")


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
    if not settings.intake_client_tokens:
        log.warning(
            "intake: NO CLIENT TOKENS CONFIGURED - anyone who can reach this intake can write events; "
            "set RUM_INTAKE_CLIENT_TOKENS (token=application_id,...)"
        )
    sink = KafkaSink(settings)
    app = create_app(settings, sink, IntakeMetrics(process=True))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **runner_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, settings.intake_host, settings.intake_port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        where = listening_url(settings.intake_host, settings.intake_port)
        raise PipelineError(
            f"cannot listen on {where}: {exc.strerror or exc} (RUM_INTAKE_HOST/PORT)"
        ) from None
    port = settings.intake_port
    # The bound socket tells the real port when 0 was asked for.
    sockets = getattr(site._server, "sockets", None) or []
    if sockets:
        port = sockets[0].getsockname()[1]
    print(f"intake: listening on {listening_url(settings.intake_host, port)}", flush=True)

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
