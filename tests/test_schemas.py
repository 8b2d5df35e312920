"""The schema files: valid 2020-12 documents, documented, and matching example records."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest

from pipeline import schemas
from pipeline.schemas import BAD_ROW, ENRICHED_ACTION, RAW_ACTION, SCHEMA_NAMES, json_path, validate_record
from tests.factory import raw_action

#: The typical action with the fields a richer SDK sends too (user name and email, a port and
#: fragment in the URL, a mobile user agent, ``_dd``).
RAW_EXAMPLE: dict[str, Any] = raw_action(
    usr={"id": "u-7", "name": "Ada", "email": "ada@shop.example"},
    view={
        "id": "v-1",
        "url": "https://shop.example:8443/orders/12345/items?utm_source=news&tag=a&tag=b#summary",
        "referrer": "https://www.google.com/",
        "name": "/cart",
    },
    http={"useragent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148 Safari/604.1"},
    _dd={"format_version": 2},
)


def enriched_example() -> dict[str, Any]:
    """An enriched action with every field the pipeline can add."""
    event = copy.deepcopy(RAW_EXAMPLE)
    event["view"].update(
        {
            "url_scheme": "https",
            "url_host": "shop.example",
            "url_port": 8443,
            "url_path": "/orders/12345/items",
            "url_path_group": "/orders/?/items",
            "url_query": {"utm_source": "news", "tag": ["a", "b"]},
            "url_hash": "summary",
            "referrer_host": "www.google.com",
        }
    )
    event["geo"] = {
        "country": "United Kingdom",
        "country_iso_code": "GB",
        "country_subdivision": "England",
        "city": "Boxford",
        "continent": "Europe",
        "continent_code": "EU",
        "location": {"latitude": 51.75, "longitude": -1.25, "accuracy_radius": 100},
        "timezone": "Europe/London",
    }
    event["browser"] = {"name": "Mobile Safari", "version": "17.1", "version_major": 17}
    event["os"] = {"name": "iOS", "version": "17.1", "version_major": 17}
    event["device"] = {"type": "mobile", "brand": "Apple", "model": "iPhone", "name": "Apple iPhone"}
    event["network"]["client"]["ip"] = "81.2.69.0"
    event["pipeline"] = {
        "processor": {"name": "rum-pipeline", "version": "0.1.0"},
        "received_at": 1764340000150,
        "enriched_at": 1764340000151,
        "source": {"topic": "rum.actions.raw", "partition": 5, "offset": 1234},
        "warnings": [{"enrichment": "geo", "path": "$.network.client.ip", "message": "no match"}],
    }
    return event


BAD_ROW_EXAMPLE: dict[str, Any] = {
    "schema_version": "1",
    "kind": "schema",
    "errors": [
        {"path": "$.action.target", "message": '"name" is a required property'},
        {"path": "$.date", "message": 'value is not of type "integer" (got string)'},
    ],
    "processor": {"name": "rum-pipeline", "version": "0.1.0"},
    "failed_at": 1764340000151,
    "source": {"topic": "rum.actions.raw", "partition": 5, "offset": 1234, "key": None},
    "payload": {"encoding": "base64", "data": "/w==", "size": 1},
}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_files_are_valid_2020_12(name: str) -> None:
    schema = schemas.load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://rum-pipeline.dev/schemas/{name}.json"
    assert schema["title"]
    assert schema["description"]
    jsonschema_rs.meta.validate(schema)
    assert schemas.validator(name) is schemas.validator(name)  # compiled once


def _properties(schema: Any, where: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        for key, sub in schema.get("properties", {}).items():
            yield f"{where}.{key}", sub
        for key, sub in schema.items():
            if isinstance(sub, dict | list):
                yield from _properties(sub, f"{where}.{key}" if key == "properties" else where)
    elif isinstance(schema, list):
        for sub in schema:
            yield from _properties(sub, where)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_property_is_described(name: str) -> None:
    undocumented = [
        path
        for path, sub in _properties(schemas.load_schema(name))
        if "description" not in sub and "$ref" not in sub
    ]
    assert undocumented == []


def test_unknown_schema_name() -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        schemas.load_schema("raw-action.v2")
    with pytest.raises(ValueError, match="unknown schema"):
        schemas.validator("nope")


def test_design_example_is_a_valid_raw_action() -> None:
    assert validate_record(RAW_ACTION, RAW_EXAMPLE) == []


def test_enriched_example_is_valid() -> None:
    assert validate_record(ENRICHED_ACTION, enriched_example()) == []


def test_enriched_action_may_lose_its_ip_and_warnings() -> None:
    event = enriched_example()
    del event["network"]["client"]["ip"]
    del event["pipeline"]["warnings"]
    del event["geo"]
    assert validate_record(ENRICHED_ACTION, event) == []


def test_a_raw_action_is_not_an_enriched_action() -> None:
    assert validate_record(ENRICHED_ACTION, RAW_EXAMPLE) == ['$: "pipeline" is a required property']


@pytest.mark.parametrize(
    ("change", "path"),
    [
        # Raw rules hold in the enriched schema: the $ref to raw-action.v1 resolves.
        (lambda e: e.update(date="today"), "$.date"),
        (lambda e: e["action"]["target"].pop("name"), "$.action.target"),
        (lambda e: e["view"].update(url_port="8443"), "$.view.url_port"),
        (lambda e: e["view"]["url_query"].update(tag=["a", 1]), "$.view.url_query.tag[1]"),
        (lambda e: e["view"]["url_query"].update(n=1), "$.view.url_query.n"),
        (lambda e: e["device"].update(type="tv"), "$.device.type"),
        (lambda e: e["browser"].update(version_major="17"), "$.browser.version_major"),
        (lambda e: e["geo"]["location"].update(latitude=91), "$.geo.location.latitude"),
        (lambda e: e["pipeline"].pop("source"), "$.pipeline"),
        (lambda e: e["pipeline"]["source"].update(offset=-1), "$.pipeline.source.offset"),
        (lambda e: e["pipeline"].update(extra=1), "$.pipeline"),
        (lambda e: e["pipeline"]["warnings"][0].pop("path"), "$.pipeline.warnings[0]"),
    ],
)
def test_enriched_errors(change: Any, path: str) -> None:
    event = enriched_example()
    change(event)
    errors = validate_record(ENRICHED_ACTION, event)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: ")


def test_bad_row_example_is_valid() -> None:
    assert validate_record(BAD_ROW, BAD_ROW_EXAMPLE) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda r: r.update(schema_version="2"), "$.schema_version"),
        (lambda r: r.update(kind="timeout"), "$.kind"),
        (lambda r: r.update(errors=[]), "$.errors"),
        (lambda r: r["errors"][0].update(path="action.target"), "$.errors[0].path"),
        (lambda r: r["source"].update(key="s-1"), "$.source.key"),
        (lambda r: r["payload"].update(encoding="hex"), "$.payload.encoding"),
        (lambda r: r.pop("payload"), "$"),
        (lambda r: r.update(note="x"), "$"),
    ],
)
def test_bad_row_errors(change: Any, path: str) -> None:
    row = copy.deepcopy(BAD_ROW_EXAMPLE)
    change(row)
    errors = validate_record(BAD_ROW, row)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([], "$"),
        (["action", "target", "name"], "$.action.target.name"),
        (["context", "items", 0], "$.context.items[0]"),
        (["context", "a b", "0", "it's"], "$.context['a b']['0']['it\\'s']"),
        (["_dd", "x-y"], "$._dd['x-y']"),
    ],
)
def test_json_path(parts: list[str | int], expected: str) -> None:
    assert json_path(parts) == expected


def test_written_schemas_hold_the_enrichments_defs_and_validate_alone(tmp_path: Path) -> None:
    assert schemas.main([str(tmp_path)]) == 0
    written = {name: orjson.loads((tmp_path / f"{name}.json").read_bytes()) for name in SCHEMA_NAMES}
    assert {"view", "geo", "browser", "os", "device"} <= set(written[ENRICHED_ACTION]["$defs"])
    assert "campaign" in written[ENRICHED_ACTION]["$defs"]["view"]["properties"]
    # A consumer in another language loads the files alone: references resolve among them.
    registry = jsonschema_rs.Registry([(schema["$id"], schema) for schema in written.values()])
    enriched = jsonschema_rs.validator_for(written[ENRICHED_ACTION], registry=registry)
    assert enriched.is_valid(enriched_example())
    assert not enriched.is_valid({**enriched_example(), "geo": {"country": 7}})


def test_the_committed_enriched_schema_holds_every_enrichments_defs() -> None:
    committed = orjson.loads((schemas.SCHEMAS_DIR / f"{ENRICHED_ACTION}.json").read_bytes())
    assert committed == schemas.load_schema(ENRICHED_ACTION), (
        "schemas/enriched-action.v1.json differs from the enrichments' fragments: "
        "run `python -m pipeline.schemas schemas` and commit the result"
    )
