"""The explorer page while the view is still reading the topics: it waits, asks no query, logs nothing.

Queries answer 503 until the view has caught up, and a browser logs every 503
as a console error; so the page asks GET /api/v1/rollups (always 200, with the
view's state) until the view has caught up, says so, and only then queries.
Here the view is declared caught up after the page has asked the catalog a few
times (the reader is replaced by its progress alone: no broker is involved).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

from pipeline.serve import api, explorer, health
from pipeline.serve.service import ViewService
from pipeline.view.request import Limits
from tests.serve.browser import Site, check_clean, drive, require_browser, running_app
from tests.serve.test_api import CATALOG, filled_store

#: How many catalog requests the page makes before the view has caught up.
CATALOG_ASKS = 3


@dataclass
class Progress:
    """The part of a view reader's progress that serve reads."""

    caught_up: bool = False
    lag: int = 1234
    records: int = 0


@dataclass
class Reader:
    """Stands for the view reader: only its progress is read by the routes."""

    progress: Progress


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    require_browser()


def test_page_waits_for_the_view_without_console_errors(tmp_path_factory: pytest.TempPathFactory) -> None:
    progress = Progress()
    service = ViewService(filled_store()[0], CATALOG, Limits(), reader=Reader(progress))  # type: ignore[arg-type]
    asked: list[tuple[str, bool]] = []

    @web.middleware
    async def count(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        asked.append((request.path, progress.caught_up))
        if request.path == "/api/v1/rollups" and sum(p == request.path for p, _ in asked) > CATALOG_ASKS:
            progress.caught_up = True
        return await handler(request)

    app = web.Application(middlewares=[count])
    health.add_routes(app, service)
    api.add_routes(app, service)
    explorer.add_routes(app, service)
    with running_app(app) as url:
        site = Site({}, url, tmp_path_factory.mktemp("catching-up"))
        report = drive(site, [{"name": "caught-up"}])
    check_clean(report, site)  # among others: no 503 was ever answered to the page
    assert sum(path == "/api/v1/rollups" for path, _ in asked) > CATALOG_ASKS
    assert not [
        path for path, ready in asked if path.startswith(("/api/v1/query", "/api/v1/facets")) and not ready
    ]
    step = report["steps"][0]
    assert [row["group"] for row in step["rows"]] == [{"geo.country": "France"}, {"geo.country": "Spain"}]
    assert step["message"] == ""
