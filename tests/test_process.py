"""Processor.process: exactly one output for any input, and it never raises."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.badrows import MAX_BAD_ROW_BYTES, blob_data, original_payload
from pipeline.enrich.useragent import MAX_PARSED_CHARS
from pipeline.process import MAX_ENRICHED_BYTES, Processor
from pipeline.schemas import validate_record
from pipeline.settings import load_settings
from tests.fuzz import hostile

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


# One regression test per hostile input class (tests/fuzz/hostile.py): the action keeps flowing
# with the warning that says what was cut or changed, and every output fits its topic.
EXPECTED: dict[str, tuple[list[str], dict[str, Any]]] = {
    "ua_absurd_version": (["browser.version_major"], {"browser.name": "Chrome"}),
    "ua_huge_non_ascii": (["http.useragent"], {"device.type": "other"}),  # and the user agent cut
    "ua_distinct": ([], {"browser.name": "Chrome"}),
    "ip_huge": (["network.client.ip", "network.client.ip"], {}),
    "ip_distinct": ([], {"network.client.ip": "2001:480::"}),
    "big_integers": (["context.items[0]", "context.n"], {"context.n": str(10**29)}),
    "url_credentials": (["view.url"], {"view.url": "https://shop.example/cart?x=0"}),
    "url_idna": (
        [],
        {"view.url_host": "xn--bcher-kva.example", "view.referrer_host": "xn--bcher-kva.example"},
    ),
    "url_backslash": ([], {"view.url_host": "shop.example", "view.url_path": "/evil.example/0/x"}),
    "url_many_parameters": (["view.url"], {"view.url_host": "shop.example"}),  # read up to MAX_QUERY_PAIRS
    "url_huge": (["view.url"], {"view.url_host": "shop.example"}),
}


def _at(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value[part]
    return value


@pytest.mark.parametrize("name", sorted(hostile.CLASSES))
def test_each_hostile_class(processor: Processor, name: str) -> None:
    payload = hostile.CLASSES[name](0, 200_000)
    out = processor.process(payload, key=b"s-0", topic="raw", partition=0, offset=1)
    assert len(out.value) + 3 <= MAX_ENRICHED_BYTES
    record = orjson.loads(out.value)
    if name not in hostile.KEPT:
        assert out.bad_kind is not None
        assert validate_record("bad-row.v1", record) == []
        assert original_payload(record) == payload
        return
    assert out.enriched, record
    assert validate_record("enriched-action.v1", record) == []
    paths, values = EXPECTED[name]
    assert sorted(w["path"] for w in record["pipeline"]["warnings"]) == paths
    for dotted, value in values.items():
        assert _at(record, dotted) == value
    assert len(out.value) < len(payload) + 120_000  # enrichment adds a bounded amount
    raw_ua = orjson.loads(payload)["http"]["useragent"]
    assert record["http"]["useragent"] == raw_ua[:MAX_PARSED_CHARS]  # cut only when over the limit


def test_an_enriched_action_over_the_topic_limit_is_a_truncated_bad_row(test_mmdb: Path) -> None:
    processor = Processor(
        load_settings({"RUM_GEOIP_DATABASE": str(test_mmdb), "RUM_MAX_MESSAGE_BYTES": str(16 << 20)})
    )
    payload = hostile.url_huge(0, 9_000_000)
    out = processor.process(payload, key=b"s-0", topic="raw", partition=0, offset=1)
    row = orjson.loads(out.value)
    assert out.bad_kind == "size"
    assert row["errors"][0]["message"].startswith("enriched action is ")
    assert validate_record("bad-row.v1", row) == []
    assert row["payload"]["truncated"] is True
    assert row["payload"]["size"] == len(payload)
    assert row["payload"]["sha256"] == hashlib.sha256(payload).hexdigest()
    assert payload.startswith(blob_data(row["payload"]))
    assert len(out.value) + 3 <= MAX_BAD_ROW_BYTES


@pytest.mark.parametrize(
    ("literal", "kept"),
    [
        (b"123456789012345678901234567890", "123456789012345678901234567890"),
        (b"-9223372036854775809", "-9223372036854775809"),
        (b"18446744073709551616", "18446744073709551616"),
        (b"1" * 5000, "1" * 5000),
    ],
)
def test_integers_beyond_64_bits_are_kept_exactly_as_text(
    processor: Processor, literal: bytes, kept: str
) -> None:
    payload = (
        b'{"type":"action","date":1764340000000,"action":{"target":{"name":"x"}},"context":{"n":%s}}'
        % (literal)
    )
    record = _check_one_output(processor, payload)
    assert record["context"]["n"] == kept
    assert record["pipeline"]["warnings"] == [
        {
            "enrichment": "validate",
            "path": "context.n",
            "message": "integer beyond 64 bits kept exactly as its decimal text (a string)",
        }
    ]


@pytest.mark.parametrize("date", [b"10000000000000000000000", b"-10000000000000000000000", b"1e22"])
def test_a_big_date_gives_the_same_output_in_a_small_and_a_large_payload(
    processor: Processor, date: bytes
) -> None:
    outputs = []
    for pad in (b"", b"p" * 20_000):
        payload = b'{"type":"action","date":%s,"action":{"target":{"name":"x"}},"context":{"pad":"%s"}}' % (
            date,
            pad,
        )
        record = _check_one_output(processor, payload)
        outputs.append((record.get("kind"), record.get("errors"), record.get("date")))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("values", [1, 2000])  # a large payload's few values are looked at, many are scanned
@pytest.mark.parametrize(
    ("literal", "kept"),
    [
        (b"123456789012345678901234567890", "123456789012345678901234567890"),
        (b"-9223372036854775809", "-9223372036854775809"),
        (b"1" * 5000, "1" * 5000),
        (b"18446744073709551615", 18446744073709551615),
        (b"1e30", 1e30),
    ],
)
def test_integers_in_large_payloads_are_read_exactly(
    processor: Processor, values: int, literal: bytes, kept: Any
) -> None:
    items = b",".join(b"1" for _ in range(values))
    payload = (
        b'{"type":"action","date":1764340000000,"action":{"target":{"name":"x"}},'
        b'"context":{"pad":"%s","items":[%s],"n":%s}}' % (b"p" * 20_000, items, literal)
    )
    record = _check_one_output(processor, payload)
    assert record["context"]["n"] == kept
    assert [w["path"] for w in record["pipeline"]["warnings"]] == (["context.n"] if type(kept) is str else [])


@pytest.mark.parametrize(
    "literal",
    [b"18446744073709551615", b"-9223372036854775808", b'"123456789012345678901234567890"', b"1e30"],
)
def test_numbers_orjson_holds_exactly_are_untouched(processor: Processor, literal: bytes) -> None:
    payload = (
        b'{"type":"action","date":1764340000000,"action":{"target":{"name":"x"}},"context":{"n":%s}}'
        % (literal)
    )
    record = _check_one_output(processor, payload)
    assert record["context"]["n"] == orjson.loads(literal)
    assert record["pipeline"]["warnings"] == []


def test_a_big_integer_where_the_schema_wants_a_number_is_a_schema_error(processor: Processor) -> None:
    payload = (
        b'{"type":"action","date":1764340000000,"action":{"target":{"name":"x"}},'
        b'"browser":{"version_major":123456789012345678901234567890}}'
    )
    record = _check_one_output(processor, payload)
    assert record["kind"] == "schema"
    assert [e["path"] for e in record["errors"]] == ["$.browser.version_major"]
