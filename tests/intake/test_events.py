"""Parsing, stamping and routing of events, without HTTP."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.intake.events import (
    Stamps,
    array_elements,
    ndjson_lines,
    parse_actions,
    parse_ndjson,
    route_of,
)

STAMPS = Stamps(client_ip="81.2.69.142", user_agent="Mozilla/5.0 test", received_at=1_764_340_000_500)
ACTION = {"type": "action", "date": 1, "session": {"id": "s-1"}, "action": {"target": {"name": "checkout"}}}


def line(obj: object) -> bytes:
    return orjson.dumps(obj)


def test_malformed_lines_are_rejected_with_their_line_numbers_and_the_rest_kept() -> None:
    body = b"\n".join(
        [line(ACTION), b"{not json", b"", line([1, 2]), line({"date": 1}), b"\xff\xfe", line(ACTION)]
    )
    batch = parse_ndjson(body, STAMPS, 1 << 20)
    assert len(batch.records) == 2
    assert [(r.position, r.reason) for r in batch.rejections] == [
        (2, "parse"),
        (4, "schema"),
        (5, "schema"),
        (6, "parse"),
    ]


def test_blank_lines_crlf_and_a_missing_final_newline_are_fine() -> None:
    body = line(ACTION) + b"\r\n\r\n  \n" + line(ACTION)
    batch = parse_ndjson(body, STAMPS, 1 << 20)
    assert len(batch.records) == 2 and not batch.rejections


def test_an_event_of_the_limit_or_more_is_rejected_a_smaller_one_kept() -> None:
    limit = 200
    small = line({**ACTION, "context": {"pad": "x" * 50}})
    padding = limit - len(line({**ACTION, "context": {"pad": ""}}))
    exact = line({**ACTION, "context": {"pad": "x" * padding}})
    assert len(exact) == limit
    batch = parse_ndjson(small + b"\n" + exact, STAMPS, limit)
    assert len(batch.records) == 1
    assert [(r.position, r.reason) for r in batch.rejections] == [(2, "size")]


def test_stamps_ip_user_agent_and_receive_time() -> None:
    (record,) = parse_ndjson(line(ACTION), STAMPS, 1 << 20).records
    event = orjson.loads(record.value)
    assert event["network"] == {"client": {"ip": "81.2.69.142"}}
    assert event["http"] == {"useragent": "Mozilla/5.0 test"}
    assert event["intake"] == {"received_at": 1_764_340_000_500}
    assert event["date"] == 1  # the client's event time is left alone
    assert record.key == b"s-1"


def test_an_event_user_agent_wins_but_a_browser_cannot_choose_its_ip() -> None:
    sent = {**ACTION, "http": {"useragent": "Own/1.0"}, "network": {"client": {"ip": "1.2.3.4"}}}
    event = orjson.loads(parse_ndjson(line(sent), STAMPS, 1 << 20).records[0].value)
    assert event["http"]["useragent"] == "Own/1.0"
    assert event["network"]["client"]["ip"] == "81.2.69.142"


def test_server_side_actions_keep_the_ip_they_carry() -> None:
    sent = {**ACTION, "network": {"client": {"ip": "1.2.3.4"}}}
    stamps = Stamps("10.0.0.9", None, 5, keep_event_ip=True)
    event = orjson.loads(parse_actions(line(sent), stamps, 1 << 20).records[0].value)
    assert event["network"]["client"]["ip"] == "1.2.3.4"
    unset = orjson.loads(parse_actions(line(ACTION), stamps, 1 << 20).records[0].value)
    assert unset["network"]["client"]["ip"] == "10.0.0.9"
    assert "http" not in unset  # no User-Agent header, nothing invented


def test_a_client_sent_intake_field_is_replaced() -> None:
    sent = {**ACTION, "intake": {"received_at": 1}}
    event = orjson.loads(parse_ndjson(line(sent), STAMPS, 1 << 20).records[0].value)
    assert event["intake"] == {"received_at": STAMPS.received_at}


def test_non_object_network_or_http_is_rejected_rather_than_overwritten() -> None:
    body = line({**ACTION, "network": "wifi"}) + b"\n" + line({**ACTION, "http": [1]})
    batch = parse_ndjson(body, STAMPS, 1 << 20)
    assert not batch.records
    assert [r.reason for r in batch.rejections] == ["schema", "schema"]
    assert "network must be an object" in batch.rejections[0].message


@pytest.mark.parametrize(
    ("event", "route"),
    [
        ({"type": "action", "action": {"type": "custom", "target": {"name": "a"}}}, "raw"),
        ({"type": "action", "action": {"target": {"name": "a"}}}, "raw"),
        ({"type": "action"}, "raw"),  # the worker turns it into a bad row, with its bytes
        ({"type": "action", "action": {"type": "click"}}, "other"),
        ({"type": "view"}, "other"),
        ({"type": "resource"}, "other"),
        ({"type": "error"}, "other"),
        ({"type": "long_task"}, "other"),
        ({"type": "vital"}, "other"),
        ({"type": "telemetry"}, "other"),
    ],
)
def test_routes(event: dict, route: str) -> None:
    assert route_of(event) == route


def test_the_token_application_fills_in_and_guards_application_id() -> None:
    stamps = Stamps(None, None, 5, application="shop")
    body = b"\n".join(
        [
            line(ACTION),
            line({**ACTION, "application": {"id": "shop"}}),
            line({**ACTION, "application": {"id": "blog"}}),
        ]
    )
    batch = parse_ndjson(body, stamps, 1 << 20)
    assert [orjson.loads(r.value)["application"]["id"] for r in batch.records] == ["shop", "shop"]
    assert [(r.position, r.reason) for r in batch.rejections] == [(3, "application")]


def test_a_wildcard_token_accepts_any_application_and_sets_none() -> None:
    stamps = Stamps(None, None, 5, application="*")
    batch = parse_ndjson(
        line(ACTION) + b"\n" + line({**ACTION, "application": {"id": "blog"}}), stamps, 1 << 20
    )
    events = [orjson.loads(r.value) for r in batch.records]
    assert "application" not in events[0] and events[1]["application"]["id"] == "blog"


def test_actions_endpoint_takes_one_object_or_an_array_and_defaults_the_type() -> None:
    one = parse_actions(line({"date": 1, "action": {"target": {"name": "a"}}}), STAMPS, 1 << 20)
    assert len(one.records) == 1 and orjson.loads(one.records[0].value)["type"] == "action"
    many = parse_actions(line([ACTION, {"type": "view"}, 7, ACTION]), STAMPS, 1 << 20)
    assert len(many.records) == 2
    assert [(r.position, r.reason) for r in many.rejections] == [(1, "schema"), (2, "schema")]


@pytest.mark.parametrize("body", [b"{oops", b"42", b'"text"'])
def test_actions_endpoint_refuses_a_body_that_is_not_an_object_or_array(body: bytes) -> None:
    with pytest.raises(ValueError, match="body"):
        parse_actions(body, STAMPS, 1 << 20)


def test_env_service_and_version_come_from_ddtags_when_the_event_lacks_them() -> None:
    event = {**ACTION, "service": "shop-web", "ddtags": "sdk_version:7.16.2,api:fetch,env:prod,version:1.4.2"}
    [record] = parse_ndjson(line(event), STAMPS, 1 << 20).records
    stamped = orjson.loads(record.value)
    assert (stamped["env"], stamped["service"], stamped["version"]) == ("prod", "shop-web", "1.4.2")
    own = {**ACTION, "env": "staging", "ddtags": "env:prod,service:"}
    [record] = parse_ndjson(line(own), STAMPS, 1 << 20).records
    stamped = orjson.loads(record.value)
    assert stamped["env"] == "staging" and "service" not in stamped


def test_refused_lines_keep_their_exact_bytes() -> None:
    lines = [line(ACTION), b"{not json \xff", b"  [1, 2]  ", line({**ACTION, "context": {"pad": "x" * 300}})]
    batch = parse_ndjson(b"\r\n".join(lines), STAMPS, 200)
    assert [(r.position, r.payload) for r in batch.rejections] == [
        (2, lines[1]),
        (3, lines[2]),
        (4, lines[3]),
    ]


def test_refused_array_elements_keep_their_exact_bytes() -> None:
    body = b'[ {"type":"view"} ,\n  {"type": "action", "s": "a,]}\\"{"} , 7, {"type":"action"}\t]'
    batch = parse_actions(body, STAMPS, 1 << 20)
    assert [(r.position, r.payload) for r in batch.rejections] == [
        (0, b'{"type":"view"}'),
        (2, b"7"),
    ]
    single = parse_actions(b' {"type": "view"}\n', STAMPS, 1 << 20)
    assert [(r.position, r.payload) for r in single.rejections] == [(0, b'{"type": "view"}')]


@pytest.mark.parametrize(
    ("body", "elements"),
    [
        (b"[]", []),
        (b" [ ] ", []),
        (b"[1]", [b"1"]),
        (
            b'["", {}, [], "\\\\", "\\"[", {"a": [1, {"b": ","}]}]',
            [b'""', b"{}", b"[]", b'"\\\\"', b'"\\"["', b'{"a": [1, {"b": ","}]}'],
        ),
    ],
)
def test_array_elements(body: bytes, elements: list[bytes]) -> None:
    assert array_elements(body) == elements
    assert [orjson.loads(e) for e in elements] == orjson.loads(body)


@given(
    st.lists(
        st.sampled_from([b"\n", b"\r", b" ", b"\t", b"\x0b", b"\x0c", b"a", b"{}", b"\xff"]), max_size=40
    )
)
def test_ndjson_lines_are_the_non_blank_lines_with_their_numbers(parts: list[bytes]) -> None:
    body = b"".join(parts)
    expected = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        line = line[:-1] if line.endswith(b"\r") else line
        if line.strip():
            expected.append((number, line))
    assert list(ndjson_lines(body)) == expected
