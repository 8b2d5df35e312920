"""What the intake makes of a real SDK batch is what the worker and the schemas accept."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import orjson
import pytest

from pipeline.intake.events import Stamps, parse_ndjson
from pipeline.process import Processor
from pipeline.schemas import ENRICHED_ACTION, RAW_ACTION, SCHEMAS_DIR, validate_record
from pipeline.settings import load_settings

UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"  # noqa: E501
STAMPS = Stamps(client_ip="81.2.69.142", user_agent=UA, received_at=1_764_340_000_500)


@pytest.fixture
def processor(test_mmdb: Path) -> Processor:
    return Processor(load_settings({"RUM_GEOIP_DATABASE": str(test_mmdb)}))


def rum_event_validator() -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(json.loads((SCHEMAS_DIR / "rum-event.v1.json").read_text()))


def test_the_sdk_custom_action_becomes_an_enriched_action(sdk_batch: bytes, processor: Processor) -> None:
    batch = parse_ndjson(sdk_batch, STAMPS, 1 << 20)
    (raw,) = [r for r in batch.records if r.route == "raw"]
    assert validate_record(RAW_ACTION, orjson.loads(raw.value)) == []
    out = processor.process(raw.value, key=raw.key, topic="rum.actions.raw", partition=3, offset=7)
    assert out.enriched, out.value
    event = out.event
    assert event is not None
    assert validate_record(ENRICHED_ACTION, event) == []
    assert event["action"]["target"]["name"] == "checkout"
    assert event["context"] == {"value": 42.12, "items": ["tomato", "strawberries"], "cart_id": "c-981"}
    assert event["geo"]["country_iso_code"] == "GB"  # from the stamped client IP
    assert event["device"]["type"] == "mobile"  # from the stamped User-Agent
    assert event["view"]["url_query"] == {"utm_source": "news"}
    assert event["intake"] == {"received_at": STAMPS.received_at}
    # Everything the SDK sent is still there.
    for field in ("_dd", "display", "connectivity", "usr", "privacy", "ddtags", "source", "session"):
        assert event[field] == orjson.loads(raw.value)[field]


def test_every_other_sdk_event_validates_against_the_other_events_schema(sdk_batch: bytes) -> None:
    validator = rum_event_validator()
    others = [
        orjson.loads(r.value) for r in parse_ndjson(sdk_batch, STAMPS, 1 << 20).records if r.route == "other"
    ]
    assert sorted(e["type"] for e in others) == ["action", "error", "view"]
    for event in others:
        assert list(validator.iter_errors(event)) == []


def test_the_other_events_schema_rejects_records_without_intake_stamps() -> None:
    assert not rum_event_validator().is_valid({"type": "view"})
    assert not rum_event_validator().is_valid({"type": "", "intake": {"received_at": 1}})


def test_the_other_events_schema_is_valid_and_described() -> None:
    schema = json.loads((SCHEMAS_DIR / "rum-event.v1.json").read_text())
    jsonschema_rs.meta.validate(schema)
    assert schema["$id"] == "https://rum-pipeline.dev/schemas/rum-event.v1.json"

    def undescribed(node: object) -> list[str]:
        found = []
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    found.append(key)
            for sub in node.values():
                found += undescribed(sub)
        return found

    assert undescribed(schema) == []
