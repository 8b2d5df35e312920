"""Bad rows: schema-valid records that keep the original bytes exactly."""

from __future__ import annotations

import base64
import hashlib
import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pipeline
from pipeline.badrows import (
    MAX_BAD_ROW_BYTES,
    MAX_ERRORS,
    _escaped_len,
    blob_data,
    decode_bytes,
    make_bad_row,
    original_key,
    original_payload,
)
from pipeline.errors import PipelineError
from pipeline.schemas import BAD_ROW, validate_record
from pipeline.validate import Failure, RawValidator

ERRORS = [("$.date", 'value is not of type "integer" (got string)')]


def bad_row(payload: bytes, key: bytes | None = b"s-1", **kwargs: object) -> dict:
    return make_bad_row("schema", ERRORS, payload, "rum.actions.raw", 3, 42, key, **kwargs)  # type: ignore[arg-type]


def test_utf8_payload_is_kept_as_text() -> None:
    row = bad_row('{"name": "café"}'.encode(), now_ms=1764340000000)
    assert row == {
        "schema_version": "1",
        "kind": "schema",
        "errors": [{"path": "$.date", "message": 'value is not of type "integer" (got string)'}],
        "processor": {"name": pipeline.PROCESSOR_NAME, "version": pipeline.__version__},
        "failed_at": 1764340000000,
        "source": {
            "topic": "rum.actions.raw",
            "partition": 3,
            "offset": 42,
            "key": {"encoding": "utf-8", "data": "s-1", "size": 3},
        },
        "payload": {"encoding": "utf-8", "data": '{"name": "café"}', "size": 17},
    }
    assert validate_record(BAD_ROW, row) == []


def test_non_utf8_payload_and_key_are_base64() -> None:
    row = bad_row(b"\xff\x00{", key=b"\xc3")
    assert row["payload"] == {
        "encoding": "base64",
        "data": base64.b64encode(b"\xff\x00{").decode(),
        "size": 3,
    }
    assert row["source"]["key"] == {"encoding": "base64", "data": "ww==", "size": 1}
    assert validate_record(BAD_ROW, row) == []
    assert original_payload(row) == b"\xff\x00{"
    assert original_key(row) == b"\xc3"


def test_missing_key_is_null() -> None:
    row = bad_row(b"{}", key=None)
    assert row["source"]["key"] is None
    assert original_key(row) is None
    assert validate_record(BAD_ROW, row) == []


def test_failed_at_defaults_to_now() -> None:
    before = time.time_ns() // 1_000_000
    row = bad_row(b"{}")
    assert before <= row["failed_at"] <= time.time_ns() // 1_000_000


def test_a_bad_row_needs_an_error() -> None:
    with pytest.raises(ValueError, match="at least one error"):
        make_bad_row("parse", [], b"x", "t", 0, 0, None)


def test_altered_payload_is_refused() -> None:
    row = bad_row(b"abc")
    row["payload"]["size"] = 4
    with pytest.raises(PipelineError, match="size"):
        original_payload(row)
    with pytest.raises(PipelineError, match="base64"):
        decode_bytes({"encoding": "base64", "data": "not base64!", "size": 1})
    with pytest.raises(PipelineError, match="encoding"):
        decode_bytes({"encoding": "hex", "data": "00", "size": 1})


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b'{"type": "action"',
        b"[1, 2]",
        b'{"type": "view", "date": "x", "action": {"target": {}}}',
        b"[" * 30 + b"]" * 30,
        b"x" * ((1 << 20) + 1),
    ],
    ids=["not UTF-8", "truncated", "array", "schema errors", "too deep", "too big"],
)
def test_bad_rows_from_validation_failures_are_valid(payload: bytes) -> None:
    failure = RawValidator().check(payload)
    assert isinstance(failure, Failure)
    row = make_bad_row(failure.kind, failure.errors, payload, "rum.actions.raw", 0, 7, None)
    assert validate_record(BAD_ROW, row) == []
    assert original_payload(orjson.loads(orjson.dumps(row))) == payload


@given(
    payload=st.binary(max_size=512) | st.text(max_size=200).map(str.encode),
    key=st.none() | st.binary(max_size=64) | st.text(max_size=20).map(str.encode),
    kind=st.sampled_from(["parse", "schema", "size", "enrichment"]),
    partition=st.integers(min_value=0, max_value=10_000),
    offset=st.integers(min_value=0, max_value=2**63 - 1),
    errors=st.lists(st.tuples(st.just("$").map(str) | st.text().map("$.".__add__), st.text()), min_size=1),
)
def test_round_trip_is_byte_exact_and_schema_valid(
    payload: bytes,
    key: bytes | None,
    kind: str,
    partition: int,
    offset: int,
    errors: list[tuple[str, str]],
) -> None:
    row = make_bad_row(kind, errors, payload, "rum.actions.raw", partition, offset, key)  # type: ignore[arg-type]
    assert validate_record(BAD_ROW, row) == []
    # What a consumer gets is the serialized record, so round-trip through JSON too.
    received = orjson.loads(orjson.dumps(row))
    assert original_payload(received) == payload
    assert original_key(received) == key
    assert received["payload"]["size"] == len(payload)


def assert_fits_and_truthful(row: dict, payload: bytes, key: bytes | None, max_bytes: int) -> None:
    """The row fits with its key; the payload is whole, or a true prefix with the whole's size and hash."""
    assert validate_record(BAD_ROW, row) == []
    assert len(orjson.dumps(row)) + len(key or b"") <= max_bytes
    blob = orjson.loads(orjson.dumps(row))["payload"]
    assert blob["size"] == len(payload)
    if blob.get("truncated"):
        assert payload.startswith(blob_data(blob))
        assert blob["sha256"] == hashlib.sha256(payload).hexdigest()
        with pytest.raises(PipelineError, match="only the first"):
            original_payload(row)
    else:
        assert original_payload(row) == payload


@pytest.mark.parametrize(
    "payload",
    [b"\xff" * 6_500_000, b"\x01" * 1_500_000, b'"' * 8_000_000, "é".encode() * 4_000_000],
    ids=["non-UTF-8 bytes (base64)", "control bytes", "quotes", "two-byte characters"],
)
def test_bad_rows_of_the_largest_inputs_fit_the_bad_topic(payload: bytes) -> None:
    row = make_bad_row("size", [("$", "too large")], payload, "rum.actions.raw", 0, 1, b"s-1")
    assert_fits_and_truthful(row, payload, b"s-1", MAX_BAD_ROW_BYTES)


def test_control_bytes_go_base64_rather_than_sixfold_escaped() -> None:
    payload = b"\x01" * 1_500_000
    row = make_bad_row("parse", [("$", "x")], payload, "rum.actions.raw", 0, 1, None)
    assert row["payload"]["encoding"] == "base64"
    assert "truncated" not in row["payload"]  # 2 MB of base64 fits whole
    assert original_payload(row) == payload


@given(
    payload=st.binary(max_size=3000) | st.text(max_size=1000).map(str.encode),
    key=st.none() | st.binary(max_size=300),
    max_bytes=st.integers(min_value=1200, max_value=4000),
)
def test_truncation_always_fits_and_keeps_a_true_prefix(
    payload: bytes, key: bytes | None, max_bytes: int
) -> None:
    row = make_bad_row("size", ERRORS, payload, "rum.actions.raw", 0, 1, key, max_bytes=max_bytes)
    assert_fits_and_truthful(row, payload, key, max_bytes)


def test_errors_are_bounded_in_number_and_length_and_say_so() -> None:
    errors = [(f"$.context.k{i}", "x" * 10_000) for i in range(5000)]
    row = make_bad_row("schema", errors, b"{}", "rum.actions.raw", 0, 1, None)
    assert validate_record(BAD_ROW, row) == []
    assert len(row["errors"]) == MAX_ERRORS
    assert row["errors"][-1] == {"path": "$", "message": f"{5000 - MAX_ERRORS + 1} more errors not listed"}
    assert row["errors"][0]["message"].endswith("(cut: 10000 characters in all)")
    assert len(orjson.dumps(row)) < 300_000


@given(st.text() | st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_the_escaped_length_counted_on_bytes_is_what_orjson_writes(text: str) -> None:
    assert _escaped_len(text.encode("utf-8")) == len(orjson.dumps(text)) - 2


@pytest.mark.parametrize("byte", range(0x80))
def test_the_escaped_length_of_each_ascii_byte_is_what_orjson_writes(byte: int) -> None:
    data = bytes([byte]) * 3 + "é".encode()
    assert _escaped_len(data) == len(orjson.dumps(data.decode())) - 2
