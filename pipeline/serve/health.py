"""/healthz (the process works) and /ready (the view has caught up: answers are complete).

/ready also says whether the window columns are built ahead of queries (``rolling_warm``: those
of the rolling ranges ending now; ``warm``: every window), which does not change readiness.
"""

from __future__ import annotations

from aiohttp import web

from pipeline.serve.service import ViewService


def add_routes(app: web.Application, service: ViewService) -> None:
    """Register /healthz and /ready."""

    async def healthz(request: web.Request) -> web.Response:
        if service.failure:
            return web.json_response({"status": "failing", "reason": service.failure}, status=503)
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        body: dict[str, object] = {"ready": service.ready, "keys": service.store.keys}
        if service.reader is not None:
            progress = service.reader.progress
            # Whether queries find their window columns built; readiness stays "caught up".
            body.update(
                records=progress.records,
                lag=progress.lag,
                rolling_warm=progress.rolling_at is not None,
                warm=progress.warm,
            )
        return web.json_response(body, status=200 if service.ready else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ready", ready)
