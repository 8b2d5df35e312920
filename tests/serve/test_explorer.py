"""The explorer page's routes: the page, its static files, and GET /api/v1/rollups (no browser here)."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.serve.app import create_app
from pipeline.serve.explorer import STATIC
from pipeline.serve.service import ViewService
from pipeline.view.request import Limits
from pipeline.view.store import ViewStore
from tests.serve.test_api import CATALOG

ROOT = Path(__file__).resolve().parents[2]


def _service() -> ViewService:
    return ViewService(ViewStore(), CATALOG, Limits(), reader=None)


def test_page_and_every_file_it_loads_are_served() -> None:
    async def run() -> None:
        async with TestClient(TestServer(create_app(_service()))) as client:
            page = await client.get("/")
            assert page.status == 200 and page.content_type == "text/html"
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
            html = await page.text()
            loaded = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
            assert "/static/vendor/uplot/uPlot.iife.min.js" in loaded and "/static/explorer.js" in loaded
            # The modules the page imports, relative to /static/.
            script = (STATIC / "explorer.js").read_text()
            loaded += [f"/static/{name}" for name in re.findall(r"from '\./([\w.]+)'", script)]
            assert "/static/panels.js" in loaded
            for path in loaded:
                response = await client.get(path)
                assert response.status == 200, path
                assert response.headers["X-Content-Type-Options"] == "nosniff", path
                assert (await response.read()) == (STATIC / path.removeprefix("/static/")).read_bytes()
            for outside in ("/static/../explorer.py", "/static/%2e%2e/explorer.py", "/static/nope.js"):
                assert (await client.get(outside)).status in (403, 404), outside

    asyncio.run(run())


def test_rollups_is_the_catalog_and_says_whether_monitors_are_served() -> None:
    async def run(app: web.Application) -> dict:
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/api/v1/rollups")
            assert response.status == 200
            return await response.json()

    body = asyncio.run(run(create_app(_service())))
    assert [r["name"] for r in body["rollups"]] == list(CATALOG.rollups)
    cart = body["rollups"][0]
    info = CATALOG.rollups[cart["name"]]
    assert cart["group_by"] == list(info.group_by) and cart["aggregations"] == list(info.aggregations)
    assert cart["intervals"] == ["1m", "1h", "1d"]
    assert body["facets"] == list(CATALOG.facets)
    assert body["limits"]["max_range"] == "8d" and body["limits"]["max_points"] == Limits().max_points
    assert body["view"] == {"caught_up": True, "lag": 0}  # a service without a reader is always caught up
    served = {r.canonical for r in create_app(_service()).router.resources()}
    assert body["monitors"] == ("/api/v1/monitors" in served)

    async def monitors(request: web.Request) -> web.Response:
        return web.json_response({"monitors": []})

    app = create_app(_service())
    if "/api/v1/monitors" not in served:
        app.router.add_get("/api/v1/monitors", monitors)
    assert asyncio.run(run(app))["monitors"] is True


def test_openapi_documents_the_catalog() -> None:
    async def run() -> dict:
        async with TestClient(TestServer(create_app(_service()))) as client:
            return await (await client.get("/api/v1/openapi.json")).json()

    paths = asyncio.run(run())["paths"]
    assert "catalog" in paths["/api/v1/rollups"]["get"]["responses"]["200"]["description"].lower()


def test_package_data_carries_every_static_file() -> None:
    """An installed package has the page: pyproject's package-data globs match every static file."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package = ROOT / "pipeline"
    globs = config["tool"]["setuptools"]["package-data"]["pipeline"]
    declared = {p for glob in globs for p in package.glob(glob)}
    files = {p for p in STATIC.rglob("*") if p.is_file()}
    assert files and files <= declared, sorted(str(p) for p in files - declared)
