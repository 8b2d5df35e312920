"""GET /api/v1/query, GET /api/v1/facets/{path} and the OpenAPI document.

The parameters are those of ``rum-pipeline query`` (see ``pipeline.view.request``);
a wrong one is a 400 whose body names it: ``{"error": ..., "parameter": ...}``.
Until the view has caught up with the topics, queries get 503 (answers would be
incomplete) with ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from pipeline.serve.openapi import document
from pipeline.serve.service import ViewService
from pipeline.view.query import run_facet_query, run_query
from pipeline.view.request import QueryError, parse_facet_query, parse_query

QUERY_PARAMS = frozenset({"rollup", "last", "from", "to", "where", "agg", "every", "top", "by"})
FACET_PARAMS = frozenset({"last", "from", "to", "top"})


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _error(param: str, message: str) -> web.Response:
    return _json({"error": f"{param}: {message}", "parameter": param}, status=400)


def _single(
    request: web.Request, allowed: frozenset[str]
) -> tuple[dict[str, str | None], web.Response | None]:
    """The parameters given once each; a 400 for an unknown or repeated one."""
    query = request.query
    for name in query:
        if name not in allowed:
            return {}, _error(name, f"unknown parameter (allowed: {', '.join(sorted(allowed))})")
        if name != "where" and len(query.getall(name)) > 1:
            return {}, _error(name, "given more than once")
    return {name: query.get(name) for name in allowed if name != "where"}, None


def add_routes(app: web.Application, service: ViewService) -> None:
    """Register the query API."""

    def not_ready() -> web.Response | None:
        if service.ready:
            return None
        lag = service.reader.progress.lag if service.reader else None
        return _json(
            {"error": "the view is still reading the rollup topics", "lag": lag},
            status=503,
            headers={"Retry-After": "2"},
        )

    def view_state() -> dict[str, Any]:
        progress = service.reader.progress if service.reader else None
        return {"caught_up": service.ready, "lag": progress.lag if progress else 0}

    async def answer(
        request: web.Request,
        allowed: frozenset[str],
        run: Callable[[dict[str, str | None], int], dict[str, Any]],
    ) -> web.Response:
        """The common steps of a query endpoint: one value per parameter, a caught-up view, 400s."""
        params, bad = _single(request, allowed)
        if bad is not None:
            return bad
        waiting = not_ready()
        if waiting is not None:
            return waiting
        try:
            result = run(params, int(time.time() * 1000))
        except QueryError as exc:
            return _error(exc.param, exc.message)
        result["view"] = view_state()
        return _json(result)

    async def query(request: web.Request) -> web.Response:
        def run(params: dict[str, str | None], now: int) -> dict[str, Any]:
            where = request.query.getall("where", [])
            parsed = parse_query(params, where, service.catalog.rollups, now, service.limits)
            return run_query(service.store, parsed, service.limits)

        return await answer(request, QUERY_PARAMS, run)

    async def facets(request: web.Request) -> web.Response:
        def run(params: dict[str, str | None], now: int) -> dict[str, Any]:
            path = request.match_info["path"]
            parsed = parse_facet_query(path, params, service.catalog.facets, now, service.limits)
            return run_facet_query(service.store, parsed)

        return await answer(request, FACET_PARAMS, run)

    async def openapi(request: web.Request) -> web.Response:
        return _json(document(service.catalog, service.limits))

    app.router.add_get("/api/v1/query", query)
    app.router.add_get("/api/v1/facets/{path}", facets)
    app.router.add_get("/api/v1/openapi.json", openapi)
