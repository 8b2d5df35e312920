"""The shared raw-action builder: valid by the raw schema, accepted and enriched by the pipeline."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import orjson

import tests.factory
from pipeline.process import Processor
from pipeline.schemas import ENRICHED_ACTION, RAW_ACTION, validate_record
from pipeline.settings import load_settings
from pipeline.validate import RawValidator
from tests.factory import DATE, STAMPED, encoded, minimal_action, raw_action, sdk_action

#: The fields sdk/rum.js sets on an action (buildEvent), when every option is configured.
SDK_FIELDS = {"type", "date", "application", "service", "env", "version", "session", "usr", "view", "action",
              "context"}  # fmt: skip


def test_every_builder_gives_a_valid_raw_action() -> None:
    for event in (raw_action(), minimal_action(), sdk_action(), minimal_action("search", 0, usr={"id": "u"})):
        assert validate_record(RAW_ACTION, event) == []
        assert RawValidator().check(encoded(event)) == event


def test_the_typical_action_is_the_design_example() -> None:
    event = raw_action()
    assert event["date"] == DATE
    assert event["action"]["target"]["name"] == "checkout"
    assert event["context"] == {"value": 42.12, "items": ["tomato", "strawberries"]}
    assert set(STAMPED) <= set(event)


def test_the_sdk_shape_has_what_the_sdk_sets_and_nothing_the_intake_stamps() -> None:
    assert set(sdk_action()) == SDK_FIELDS
    # The fields rum.js's buildEvent assigns one by one are among them (a new one needs adding here).
    source = (Path(__file__).parents[1] / "sdk" / "rum.js").read_text()
    body = source[source.index("function buildEvent(") :]
    body = body[: body.index("return event")]
    assigned = set(re.findall(r"event\.(\w+) =", body))
    assert assigned and assigned <= SDK_FIELDS


def test_changes_replace_or_remove_top_level_fields_of_a_fresh_copy() -> None:
    changed = raw_action(context={"value": 1}, usr=None)
    assert changed["context"] == {"value": 1} and "usr" not in changed
    changed["action"]["target"]["name"] = "mutated"
    assert raw_action()["action"]["target"]["name"] == "checkout"  # no builder shares nested objects
    assert minimal_action(date=5) == {"type": "action", "date": 5, "action": {"target": {"name": "checkout"}}}
    assert "network" in sdk_action(network={"client": {"ip": "10.0.0.1"}})


def test_the_typical_action_comes_out_enriched_and_valid(test_mmdb: Path) -> None:
    processor = Processor(load_settings({"RUM_GEOIP_DATABASE": str(test_mmdb)}))
    out = processor.process(encoded(raw_action()), topic="raw", partition=0, offset=1, received_at=DATE)
    record = orjson.loads(out.value)
    assert out.bad_kind is None, record
    assert validate_record(ENRICHED_ACTION, record) == []
    assert record["geo"]["country_iso_code"] == "GB"  # the client IP is in the test GeoIP database


def test_the_examples_in_the_docstrings_hold() -> None:
    results = doctest.testmod(tests.factory)
    assert results.failed == 0 and results.attempted >= 2
