"""The explorer page at ``/`` and the catalog it is built from, ``GET /api/v1/rollups``.

The page is static (``static/``: HTML, CSS, plain JavaScript and the vendored
charting library, no build step): it asks the query, facet and monitor
endpoints of the same process, so it works wherever ``serve`` is reachable,
with no internet access. See docs/explorer.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.rollups.windows import SECOND_MS, format_interval
from pipeline.serve.service import ViewService

MONITORS_PATH = "/api/v1/monitors"
STATIC = Path(__file__).resolve().parent / "static"
#: The page loads only its own files and talks only to its own origin.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def catalog_body(service: ViewService, paths: set[str]) -> dict[str, Any]:
    """What can be asked of this process: rollups (groups, aggregations, intervals), facets, limits.

    ``monitors`` says whether ``/api/v1/monitors`` is among ``paths`` (the routes served), so
    that the page never asks an endpoint that is not there (a 404 is a console error in a browser).
    """
    limits = service.limits
    return {
        "rollups": [
            {
                "name": info.name,
                "group_by": list(info.group_by),
                "aggregations": list(info.aggregations),
                "intervals": [format_interval(s) for s in sorted(info.intervals_s)],
            }
            for info in service.catalog.rollups.values()
        ],
        "facets": list(service.catalog.facets),
        "limits": {
            "max_range": format_interval(limits.max_range_ms // SECOND_MS),
            "max_range_ms": limits.max_range_ms,
            "max_points": limits.max_points,
            "max_groups": limits.max_groups,
        },
        "monitors": MONITORS_PATH in paths,
        # Whether queries answer yet: the page waits on this 200 rather than on 503s (console errors).
        "view": {"caught_up": service.ready, "lag": service.reader.progress.lag if service.reader else 0},
    }


def add_routes(app: web.Application, service: ViewService) -> None:
    """Register ``/`` (the page), ``/static/`` (its files) and ``/api/v1/rollups``."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers=HEADERS)

    async def rollups(request: web.Request) -> web.Response:
        # The catalog is known from the config: no need to wait for the view to catch up.
        paths = {resource.canonical for resource in request.app.router.resources()}
        return web.json_response(catalog_body(service, paths))

    @web.middleware
    async def static_headers(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if request.path.startswith("/static/"):
            response.headers.update(HEADERS)
        return response

    app.middlewares.append(static_headers)
    app.router.add_get("/", index)
    app.router.add_get("/api/v1/rollups", rollups)
    # aiohttp's static route refuses paths outside the folder and does not follow symlinks.
    app.router.add_static("/static/", STATIC)
