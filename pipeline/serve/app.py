"""The aiohttp application of `rum-pipeline serve`, assembled from route modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from pipeline.serve import api, explorer, health, monitors_api
from pipeline.serve.service import ViewService

SERVICE = web.AppKey("service", ViewService)


def create_app(service: ViewService) -> web.Application:
    """The application: the query API under /api/v1, /healthz and /ready.

    The service's reader is started and stopped with the application.
    """
    app = web.Application()
    app[SERVICE] = service

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app.cleanup_ctx.append(lifecycle)
    health.add_routes(app, service)
    api.add_routes(app, service)
    monitors_api.add_routes(app, service)
    explorer.add_routes(app, service)
    return app
