"""Bad rows of kind intake, without HTTP: the refused bytes, the request, the IP policy."""

from __future__ import annotations

import orjson
import pytest

from pipeline.badrows import make_bad_row, make_intake_bad_row, original_key, original_payload
from pipeline.intake.events import Rejection
from pipeline.intake.rejects import RequestInfo, apply_ip_policy, bad_row_records
from pipeline.schemas import BAD_ROW, validate_record
from pipeline.settings import IpPolicy

INFO = RequestInfo("/api/v2/rum", "req-1", "line", "shop", "81.2.69.142", 1_764_340_000_500)
REJECTIONS = [
    Rejection(2, "parse", "not valid JSON", b"{broken \xff"),
    Rejection(5, "application", "application.id 'blog' is not ...", b'{"type":"action"}'),
]


def test_one_valid_bad_row_per_refused_event_with_its_bytes_and_request() -> None:
    records = bad_row_records(REJECTIONS, INFO, IpPolicy.keep)
    assert [(r.route, r.key) for r in records] == [("bad", None), ("bad", None)]
    rows = [orjson.loads(r.value) for r in records]
    for row, rejection in zip(rows, REJECTIONS, strict=True):
        assert validate_record(BAD_ROW, row) == []
        assert row["kind"] == "intake" and row["failed_at"] == INFO.received_at
        assert original_payload(row) == rejection.payload
        assert original_key(row) is None
        assert row["errors"] == [{"path": "$", "message": f"{rejection.reason}: {rejection.message}"}]
    assert rows[0]["payload"]["encoding"] == "base64"  # not UTF-8
    assert rows[0]["source"] == {
        "intake": {
            "endpoint": "/api/v2/rum",
            "request_id": "req-1",
            "line": 2,
            "reason": "parse",
            "application": "shop",
            "client_ip": "81.2.69.142",
            "received_at": 1_764_340_000_500,
        }
    }


def test_array_positions_and_a_token_for_any_application() -> None:
    info = RequestInfo("/v1/actions", "req-2", "index", "*", None, 1)
    (record,) = bad_row_records([Rejection(0, "schema", "not an action", b"7")], info, IpPolicy.keep)
    row = orjson.loads(record.value)
    assert validate_record(BAD_ROW, row) == []
    assert row["source"]["intake"]["index"] == 0 and "line" not in row["source"]["intake"]
    assert row["source"]["intake"]["application"] is None and row["source"]["intake"]["client_ip"] is None


@pytest.mark.parametrize(
    ("policy", "ip", "kept"),
    [
        (IpPolicy.keep, "81.2.69.142", "81.2.69.142"),
        (IpPolicy.truncate, "81.2.69.142", "81.2.69.0"),
        (IpPolicy.truncate, "2001:480:1:2::1", "2001:480:1::"),
        (IpPolicy.truncate, "not an ip", None),
        (IpPolicy.drop, "81.2.69.142", None),
    ],
)
def test_the_client_address_follows_the_ip_policy(policy: IpPolicy, ip: str, kept: str | None) -> None:
    assert apply_ip_policy(ip, policy) == kept
    info = RequestInfo("/api/v2/rum", "r", "line", None, ip, 1)
    (record,) = bad_row_records(REJECTIONS[:1], info, policy)
    assert orjson.loads(record.value)["source"]["intake"]["client_ip"] == kept


@pytest.mark.parametrize(
    ("payload", "encoding"),
    [
        (b"\x01" * 3000, "base64"),  # control characters: six bytes each as JSON text
        (b'"\\' * 2000, "base64"),  # quotes and backslashes: two bytes each
        ("é".encode() * 2000, "utf-8"),
        (b"\xff" * 3000, "base64"),  # not UTF-8
        (b"", "utf-8"),
        (b'{"type":"view"}', "utf-8"),
    ],
)
def test_an_intake_bad_row_stays_within_four_thirds_of_its_payload(payload: bytes, encoding: str) -> None:
    source = {"endpoint": "/api/v2/rum", "request_id": "r", "line": 1, "reason": "size"}
    source |= {"application": None, "client_ip": None, "received_at": 1}
    row = make_intake_bad_row([("$", "size: too large")], payload, source, 1)
    assert validate_record(BAD_ROW, row) == []
    assert original_payload(row) == payload
    assert row["payload"]["encoding"] == encoding
    assert len(orjson.dumps(row["payload"]["data"])) <= 4 * (len(payload) + 2) // 3 + 2


def test_kind_and_source_go_together() -> None:
    kafka = make_bad_row("schema", [("$", "x")], b"{}", "rum.actions.raw", 0, 1, None)
    source = {"endpoint": "/v1/actions", "request_id": "r", "index": 0, "reason": "schema"}
    intake = make_intake_bad_row(
        [("$", "x")], b"{}", source | {"application": None, "client_ip": None, "received_at": 1}, 1
    )
    assert validate_record(BAD_ROW, kafka) == [] and validate_record(BAD_ROW, intake) == []
    assert validate_record(BAD_ROW, {**kafka, "kind": "intake"}) != []
    assert validate_record(BAD_ROW, {**intake, "kind": "parse"}) != []
    both = {**intake["source"]["intake"], "line": 1}
    assert validate_record(BAD_ROW, {**intake, "source": {"intake": both}}) != []  # a line or an index
    mixed = {**kafka["source"], "intake": intake["source"]["intake"]}
    assert validate_record(BAD_ROW, {**intake, "source": mixed}) != []
