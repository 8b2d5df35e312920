"""The OpenAPI document: well formed for OpenAPI 3.1, complete, and true to what the API answers."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from referencing import Registry, Resource

from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.schemas import SCHEMA_NAMES, load_schema
from pipeline.serve.app import create_app
from pipeline.serve.openapi import document
from pipeline.serve.service import ViewService
from pipeline.view.catalog import Catalog
from pipeline.view.request import Limits, catalog_of
from pipeline.view.store import ViewStore
from tests.view.records import facet_record, rollup_record

CONFIG = load_rollup_config(default_config_path())
CATALOG = Catalog(catalog_of(CONFIG), tuple(f.path for f in CONFIG.facets))
HOUR_MS = 3_600_000
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
#: Routes served but deliberately not in the document: the explorer page and
#: its files, the Prometheus scrape endpoint, and the document itself.
UNDOCUMENTED = {"/", "/static", "/metrics", "/api/v1/openapi.json"}

DOC = document(CATALOG, Limits())


def _service() -> ViewService:
    """A view holding one closed hour of cart values and one facet count."""
    store = ViewStore()
    now = time.time_ns() // 1_000_000
    hour = now - now % HOUR_MS - 2 * HOUR_MS
    rollup = CONFIG.rollups[0]
    aggs = tuple(a.name for a in rollup.aggregations)
    group = {name: "France" for name in rollup.group_by}
    rows: list[tuple[Any, str | None]] = [(10.0, "u1"), (30.0, "u2")]
    store.apply_rollup_record(rollup_record(rollup.name, 3600, hour, group, rows, aggs))
    store.apply_facet(None, orjson.dumps(facet_record(CATALOG.facets[0], "x", 3600, hour, 2)))
    return ViewService(store, CATALOG, Limits(), reader=None)


def _served_paths() -> set[str]:
    app = create_app(_service())
    return {
        resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and (resource := route.resource)
    }


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_top_level_fields_of_openapi_3_1() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert set(DOC) <= {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components"}
    assert all(path.startswith("/") for path in DOC["paths"])


def test_every_operation_has_responses_with_descriptions() -> None:
    for path, method, operation in _operations():
        assert operation["responses"], (path, method)
        for code, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", code), (path, code)
            assert response["description"], (path, code)


def test_parameters_are_well_formed_and_path_templates_are_declared() -> None:
    for path, method, operation in _operations():
        params = operation.get("parameters", [])
        names = [(p["name"], p["in"]) for p in params]
        assert len(names) == len(set(names)), f"{method} {path} repeats a parameter"
        for param in params:
            assert param["in"] in {"query", "header", "path", "cookie"}
            assert "schema" in param and param["description"]
            if param["in"] == "path":
                assert param["required"] is True  # OpenAPI requires it for path parameters
        templated = set(re.findall(r"\{([^}]+)\}", path))
        assert templated == {p["name"] for p in params if p["in"] == "path"}, path


def test_the_schemas_are_json_schema_2020_12_and_every_reference_resolves() -> None:
    for schema in DOC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)  # raises SchemaError naming the fault
    ids = {load_schema(name)["$id"] for name in SCHEMA_NAMES}
    for ref in _refs(DOC):
        if ref.startswith("#/"):
            node: Any = DOC
            for part in ref[2:].split("/"):
                node = node[part]
        else:
            assert ref in ids, f"{ref} is no schema of schemas/"


def test_every_route_served_is_documented_and_every_documented_path_is_served() -> None:
    served = _served_paths()
    assert served - UNDOCUMENTED == set(DOC["paths"])
    assert served >= UNDOCUMENTED  # the exceptions are still routes: drop them from the list otherwise


def test_the_catalog_is_in_the_parameters() -> None:
    query = DOC["paths"]["/api/v1/query"]["get"]["parameters"]
    rollup = next(p for p in query if p["name"] == "rollup")
    assert rollup["schema"]["enum"] == sorted(CATALOG.rollups)
    facet = DOC["paths"]["/api/v1/facets/{path}"]["get"]["parameters"][0]
    assert facet["schema"]["enum"] == list(CATALOG.facets)


def test_the_limits_are_stated_in_the_description() -> None:
    limits = Limits(max_points=77, max_groups=12, max_range_ms=2 * 86_400_000, retention_ms=3 * 86_400_000)
    text = document(CATALOG, limits)["info"]["description"]
    assert "at most 77 points" in text and "at most 12" in text
    assert "ranges up to 2d" in text and "at most 3d ago" in text


@pytest.mark.parametrize(
    ("path", "params", "component"),
    [
        ("/api/v1/query", {"rollup": CONFIG.rollups[0].name, "last": "1d"}, "Answer"),
        ("/api/v1/query", {"rollup": CONFIG.rollups[0].name, "last": "1d", "every": "1h"}, "Answer"),
        ("/api/v1/query", {"rollup": "no-such-rollup"}, "Error"),
        ("/api/v1/monitors", {}, "Monitors"),
    ],
)
def test_answers_validate_against_the_documented_schemas(
    path: str, params: dict[str, str], component: str
) -> None:
    async def fetch() -> tuple[int, Any]:
        async with TestClient(TestServer(create_app(_service()))) as client:
            response = await client.get(path, params=params)
            return response.status, await response.json()

    status, body = asyncio.run(fetch())
    assert (status == 200) is (component != "Error"), body
    resources = [(load_schema(n)["$id"], Resource.from_contents(load_schema(n))) for n in SCHEMA_NAMES]
    schema = {**DOC["components"]["schemas"][component], "components": DOC["components"]}
    validator = jsonschema.Draft202012Validator(schema, registry=Registry().with_resources(resources))
    assert list(validator.iter_errors(body)) == []
    if component == "Answer":
        assert body["groups"] or body["series"]  # the view had data: not an empty answer passing trivially
