"""Processor.process: exactly one output for any input, and it never raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.badrows import original_payload
from pipeline.process import Processor
from pipeline.schemas import validate_record
from pipeline.settings import load_settings

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)
# Raw-action-shaped objects whose fields may hold anything: they reach deep into the enrichments.
shaped = st.fixed_dictionaries(
    {
        "type": st.just("action") | json_values,
        "date": st.integers(0, 2**45) | json_values,
        "action": st.fixed_dictionaries({"target": st.fixed_dictionaries({"name": st.text(min_size=1)})})
        | json_values,
    },
    optional={
        "view": st.fixed_dictionaries({}, optional={"url": st.text() | json_values, "referrer": st.text()})
        | json_values,
        "network": st.fixed_dictionaries({"client": st.fixed_dictionaries({"ip": st.text() | json_values})})
        | json_values,
        "http": st.fixed_dictionaries({"useragent": st.text() | json_values}) | json_values,
        "context": st.dictionaries(st.text(max_size=8), json_values, max_size=5) | json_values,
        "global_context": json_values,
        "geo": json_values,
        "browser": json_values,
        "device": json_values,
        "session": st.fixed_dictionaries({"id": st.text()}) | json_values,
    },
)


@pytest.fixture(scope="module")
def processor(test_mmdb: Path) -> Processor:
    return Processor(load_settings({"RUM_GEOIP_DATABASE": str(test_mmdb), "RUM_IP_POLICY": "truncate"}))


def _check_one_output(processor: Processor, payload: bytes) -> dict[str, Any]:
    out = processor.process(payload, key=b"k", topic="raw", partition=2, offset=7)
    record = orjson.loads(out.value)
    if out.enriched:
        assert validate_record("enriched-action.v1", record) == []
        assert record["pipeline"]["source"] == {"topic": "raw", "partition": 2, "offset": 7}
    else:
        assert validate_record("bad-row.v1", record) == []
        assert record["kind"] == out.bad_kind
        assert original_payload(record) == payload
    return record


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_arbitrary_bytes(processor: Processor, payload: bytes) -> None:
    _check_one_output(processor, payload)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(json_values)
def test_arbitrary_json(processor: Processor, value: Any) -> None:
    _check_one_output(processor, orjson.dumps(value))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shaped)
def test_action_shaped_json(processor: Processor, value: dict[str, Any]) -> None:
    _check_one_output(processor, orjson.dumps(value))


def test_a_failing_enrichment_becomes_a_bad_row(test_mmdb: Path) -> None:
    class Broken:
        name = "broken"

        def enrich(self, event: dict[str, Any], warnings: list[Any]) -> None:
            raise RuntimeError("boom")

        def stats(self) -> dict[str, float]:
            return {}

    processor = Processor(load_settings({}), enrichments=[Broken()])  # type: ignore[list-item]
    payload = orjson.dumps({"type": "action", "date": 1, "action": {"target": {"name": "x"}}})
    out = processor.process(payload, topic="raw", partition=0, offset=1)
    row = orjson.loads(out.value)
    assert out.bad_kind == "enrichment"
    assert "RuntimeError: boom" in row["errors"][0]["message"]
    assert original_payload(row) == payload
    assert processor.counts["enrichment"] == 1


def test_counts_and_fields(processor: Processor) -> None:
    payload = orjson.dumps(
        {
            "type": "action",
            "date": 1764340000000,
            "action": {"type": "custom", "target": {"name": "checkout"}},
            "context": {"value": 42.12},
            "global_context": {"plan": "pro"},
            "view": {"url": "https://shop.example/cart/12345?utm_source=news"},
            "network": {"client": {"ip": "81.2.69.142"}},
            "http": {
                "useragent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/120.0.0.0 Safari/537.36"
            },
        }
    )
    record = _check_one_output(processor, payload)
    assert record["context"] == {"plan": "pro", "value": 42.12}
    assert record["view"]["url_path_group"] == "/cart/?"
    assert record["geo"]["country_iso_code"] == "GB"  # looked up before truncation
    assert record["network"]["client"]["ip"] == "81.2.69.0"
    assert record["device"]["type"] == "desktop"
    assert record["date"] == 1764340000000


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("browser", None, "$.browser"),
        ("geo", {"country": 5}, "$.geo.country"),
        ("device", {"type": "tv"}, "$.device.type"),
        ("view", {"url_port": "80"}, "$.view.url_port"),
    ],
)
def test_reserved_fields_in_the_wrong_form_are_schema_errors(
    processor: Processor, field: str, value: Any, path: str
) -> None:
    event = {"type": "action", "date": 1, "action": {"target": {"name": "x"}}, field: value}
    record = _check_one_output(processor, orjson.dumps(event))
    assert record["kind"] == "schema"
    assert [e["path"] for e in record["errors"]] == [path]


def test_an_action_from_the_far_future_is_a_bad_row(processor: Processor) -> None:
    received = 1_764_340_000_000
    day = 24 * 3600 * 1000
    for date, kind in ((received + day + 1, "schema"), (received + day, None), (received - 7 * day, None)):
        event = {"type": "action", "date": date, "action": {"target": {"name": "x"}}}
        out = processor.process(orjson.dumps(event), received_at=received)
        assert out.bad_kind == kind, date
        if kind:
            assert orjson.loads(out.value)["errors"][0]["path"] == "$.date"
