"""Running `rum-pipeline serve` until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from pipeline.errors import PipelineError
from pipeline.serve.app import create_app
from pipeline.serve.service import ViewService
from pipeline.settings import Settings
from pipeline.view.catalog import load_catalog
from pipeline.view.request import Limits


async def serve(
    settings: Settings, host: str, port: int, limits: Limits, sketches_in_memory: int | None = None
) -> None:
    """Serve until a signal; prints ``serve: listening on http://HOST:PORT`` once bound."""
    service = ViewService.live(settings, load_catalog(settings), limits, sketches_in_memory)
    runner = web.AppRunner(create_app(service), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise PipelineError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (--host/--port)"
        ) from None
    bound = port
    for address in runner.addresses:  # the real port when 0 was asked for
        bound = address[1]
    print(f"serve: listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
