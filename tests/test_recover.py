"""Recovery of bad rows without Kafka: selection, patching, the re-check, the plan, the ledger records."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from pipeline.badrows import make_bad_row, make_intake_bad_row
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.process import Processor
from pipeline.recover import (
    HEADER_BAD_ROW,
    HEADER_SOURCE,
    BadRow,
    Checker,
    Planner,
    Selection,
    apply_patch,
    compile_error_pattern,
    ledger_entry,
    ledger_errors,
    load_patch,
    parse_time,
    raw_headers,
    run_marker,
    source_id,
)
from pipeline.schemas import BAD_ROW, validate_record
from pipeline.settings import Settings, load_settings
from tests.factory import raw_action

FIXTURES = Path(__file__).parent / "fixtures" / "recover"
NOW = 1_764_340_000_000


def _action(**changes: Any) -> dict[str, Any]:
    """The typical action, a minute old (recovery re-checks dates against the clock)."""
    return raw_action(**{"date": int(time.time() * 1000) - 60_000, **changes})


@pytest.fixture
def settings(test_mmdb: Path) -> Settings:
    return load_settings({"RUM_GEOIP_DATABASE": str(test_mmdb)})


@pytest.fixture
def checker(settings: Settings) -> Checker:
    return Checker(settings)


def _bad(
    settings: Settings, payload: bytes, offset: int, key: bytes | None = b"s-1", bad_offset: int | None = None
) -> BadRow:
    """The bad row a worker writes for ``payload`` read at raw partition 3, ``offset``."""
    out = Processor(settings).process(payload, key=key, topic="rum.actions.raw", partition=3, offset=offset)
    assert out.bad_kind is not None, "the payload must be rejected"
    row = orjson.loads(out.value)
    assert validate_record(BAD_ROW, row) == []
    return BadRow("rum.actions.bad", 0, offset if bad_offset is None else bad_offset, row)


def _row(
    kind: str = "schema", failed_at: int = NOW, partition: int = 0, errors: Any = None
) -> dict[str, Any]:
    errors = errors or [("$", "'type' is a required property")]
    return make_bad_row(kind, errors, b"{}", "rum.actions.raw", partition, 7, None, now_ms=failed_at)  # type: ignore[arg-type]


# --- times and filters ---


def test_parse_time_reads_iso_and_ages() -> None:
    assert parse_time("2025-11-28T14:26:40Z", NOW) == 1_764_340_000_000
    assert parse_time("2025-11-28T15:26:40+01:00", NOW) == 1_764_340_000_000
    assert parse_time("2025-11-28T14:26:40", NOW) == 1_764_340_000_000  # no offset: UTC
    assert parse_time("2h", NOW) == NOW - 7_200_000
    assert parse_time("30m", NOW) == NOW - 1_800_000
    assert parse_time(" 1.5d ", NOW) == NOW - 129_600_000
    with pytest.raises(PipelineError, match="ISO time"):
        parse_time("yesterday", NOW)


def test_selection_by_kind_time_partition_and_error() -> None:
    row = _row("schema", failed_at=NOW, partition=4, errors=[("$.action.type", "'custom' was expected")])
    assert Selection().matches(row)
    assert Selection(kinds=frozenset({"schema", "size"})).matches(row)
    assert not Selection(kinds=frozenset({"parse"})).matches(row)
    assert Selection(since_ms=NOW).matches(row)  # since is inclusive
    assert not Selection(since_ms=NOW + 1).matches(row)
    assert not Selection(until_ms=NOW).matches(row)  # until is exclusive
    assert Selection(until_ms=NOW + 1).matches(row)
    assert Selection(source_partitions=frozenset({4, 5})).matches(row)
    assert not Selection(source_partitions=frozenset({5})).matches(row)
    # The pattern is searched in "<path>: <message>", so it can name the path too.
    assert Selection(error=compile_error_pattern("custom")).matches(row)
    assert Selection(error=compile_error_pattern(r"^\$\.action\.type:")).matches(row)
    assert not Selection(error=compile_error_pattern(r"^\$\.type:")).matches(row)
    assert not Selection(kinds=frozenset({"schema"}), error=re.compile("date")).matches(row)


def test_bad_rows_of_the_intake_are_left_alone() -> None:
    source = {"endpoint": "/api/v2/rum", "request_id": "r", "line": 2, "reason": "parse"}
    source |= {"application": None, "client_ip": None, "received_at": NOW}
    row = make_intake_bad_row([("$", "parse: not JSON")], b"{", source, NOW)
    assert not Selection().matches(row)
    assert not Selection(source_partitions=frozenset({0})).matches(row)


def test_error_pattern_must_be_a_regex() -> None:
    with pytest.raises(PipelineError, match="regular expression"):
        compile_error_pattern("value [")


# --- patches ---


def test_load_patch_rejects_what_is_not_a_json_patch(tmp_path: Path) -> None:
    cases = {
        "not json": "is not JSON",
        '{"op": "add", "path": "/type", "value": "action"}': "JSON array",
        "[]": "JSON array",
        '[{"op": "upsert", "path": "/type", "value": 1}]': "operation 0 needs an op",
        '[{"op": "add", "value": 1}]': "operation 0 needs an op",
        '[{"op": "test", "path": "/a", "value": 1}, {"op": "replace", "path": "/type"}]': "needs 'value'",
        '[{"op": "move", "path": "/a"}]': "needs 'from'",
    }
    for text, message in cases.items():
        path = tmp_path / "patch.json"
        path.write_text(text)
        with pytest.raises(PipelineError, match=message):
            load_patch(path)
    with pytest.raises(PipelineError, match="cannot read"):
        load_patch(tmp_path / "missing.json")


def test_apply_patch_reports_what_does_not_apply() -> None:
    patch = load_patch(FIXTURES / "view-to-action.json")
    assert orjson.loads(apply_patch(patch, b'{"type": "view", "date": 1}')) == {"type": "action", "date": 1}
    failed = apply_patch(patch, b'{"type": "resource"}')
    assert isinstance(failed, str) and "JsonPatchTestFailed" in failed
    missing = apply_patch(load_patch(FIXTURES / "view-to-action.json"), b'{"date": 1}')
    assert isinstance(missing, str) and "not found" in missing
    not_json = apply_patch(patch, b"checkout value=42")
    assert isinstance(not_json, str) and "not JSON" in not_json
    # "add" on a missing parent is a JSON Pointer error, reported too.
    deep = load_patch(FIXTURES / "add-type.json")
    assert not isinstance(apply_patch(deep, b"{}"), str)
    assert isinstance(apply_patch(deep, b"[]"), str)


# --- the re-check ---


def test_checker_gives_the_workers_verdict(checker: Checker) -> None:
    assert checker.errors(orjson.dumps(_action())) == []
    missing = {k: v for k, v in _action().items() if k != "type"}
    errors = checker.errors(orjson.dumps(missing))
    assert errors and errors[0][0] == "$" and "type" in errors[0][1]
    assert checker.errors(b"\xff\xfe{}")[0][1].startswith("not valid UTF-8")
    # The processor's own rule beyond the schema: no dates a day ahead.
    future = _action(date=int(time.time() * 1000) + 3 * 86_400_000)
    assert checker.errors(orjson.dumps(future))[0][0] == "$.date"


def test_checker_with_a_newer_schema(settings: Settings) -> None:
    newer = Checker(settings, FIXTURES / "raw-action-with-views.json")
    view = orjson.dumps(_action(type="view"))
    assert Checker(settings).errors(view) != []
    assert newer.errors(view) == []
    # Its errors are the new schema's, with paths, and the limits still apply.
    errors = newer.errors(orjson.dumps(_action(type="error")))
    assert errors and errors[0][0] == "$.type" and "view" in errors[0][1]
    assert newer.errors(orjson.dumps(_action(date="soon")))[0][0] == "$.date"


def test_checker_names_an_unusable_schema(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text('{"type": "no such type"}')
    with pytest.raises(PipelineError, match="not a valid JSON Schema"):
        Checker(settings, path)


# --- the plan ---


def test_planner_outcomes_and_summary(settings: Settings, checker: Checker) -> None:
    no_type = orjson.dumps({k: v for k, v in _action().items() if k != "type"})
    click = orjson.dumps({k: v for k, v in _action(action={"type": "click"}).items() if k != "type"})
    rows = [
        _bad(settings, no_type, 10),
        _bad(settings, no_type, 10, bad_offset=11),  # the same input rejected twice (worker replay)
        _bad(settings, click, 12),  # the patch adds type, but action.type is still wrong
        _bad(settings, b"checkout value=42", 13),  # not JSON: a JSON Patch cannot apply
        _bad(settings, no_type, 14, key=None),  # no key: the repaired action's session id is used
        _bad(settings, no_type, 15),  # recovered by an earlier run
        _bad(settings, b'{"type": 1}', 16),  # type fixed, but date and action are missing
    ]
    recovered = {"rum.actions.raw/3/15"}
    planner = Planner(
        Selection(error=compile_error_pattern("type")),
        checker,
        recovered,
        load_patch(FIXTURES / "add-type.json"),
    )
    decisions = [planner.decide(b) for b in rows]
    assert [d.outcome if d else None for d in decisions] == [
        "ready",
        "duplicate",
        "still invalid",
        None,  # its error says nothing about "type"
        "ready",
        "already recovered",
        "still invalid",
    ]
    first = decisions[0]
    assert first is not None and first.patched and first.key == b"s-1"
    assert orjson.loads(first.value or b"") == _action() | {"date": orjson.loads(no_type)["date"]}
    keyless = decisions[4]
    assert keyless is not None and keyless.key == b"s-1" and keyless.source == "rum.actions.raw/3/14"
    invalid = decisions[2]
    assert invalid is not None and any(path == "$.action.type" for path, _ in invalid.errors)
    summary = planner.summary
    assert (summary.scanned, summary.matched, summary.fixed) == (7, 6, 2)
    assert summary.outcomes == {"ready": 2, "duplicate": 1, "still invalid": 2, "already recovered": 1}
    assert summary.ready_by_kind == {"schema": 2}
    assert [d.bad.offset for d in summary.examples["still invalid"]] == [12, 16]


def test_planner_without_patch_keeps_the_bytes_and_counts_patch_failures(
    settings: Settings, checker: Checker
) -> None:
    # A payload the bundled schema accepts now (as after a worker upgrade) goes back byte-exact.
    payload = b'{"type":"action",  "date": %d, "action": {"target": {"name": "x"}}}' % (
        int(time.time() * 1000)
    )
    # As rejected by an older worker, whose schema did not accept it.
    old = make_bad_row("schema", [("$", "older schema")], payload, "rum.actions.raw", 3, 20, b"s-1")
    row = BadRow("rum.actions.bad", 0, 20, old)
    decision = Planner(Selection(), checker, set()).decide(row)
    assert decision is not None and decision.outcome == "ready"
    assert decision.value == payload and not decision.patched

    planner = Planner(Selection(), checker, set(), load_patch(FIXTURES / "view-to-action.json"))
    failed = planner.decide(_bad(settings, b"[1, 2]", 21))
    assert failed is not None and failed.outcome == "patch failed" and "JsonPatch" in failed.errors[0][1]
    assert planner.summary.outcomes["patch failed"] == 1


def test_limit_counts_only_rows_not_yet_recovered(settings: Settings, checker: Checker) -> None:
    no_type = orjson.dumps({k: v for k, v in _action().items() if k != "type"})
    rows = [_bad(settings, no_type, offset) for offset in range(30, 36)]
    planner = Planner(Selection(), checker, {"rum.actions.raw/3/30", "rum.actions.raw/3/31"}, None, limit=2)
    outcomes = [d.outcome if d else None for d in map(planner.decide, rows)]
    assert outcomes == [
        "already recovered",
        "already recovered",
        "still invalid",
        "still invalid",
        None,
        None,
    ]
    assert planner.full


# --- records written to Kafka ---


def test_ledger_records_and_headers_name_the_origin(settings: Settings, checker: Checker) -> None:
    no_type = orjson.dumps({k: v for k, v in _action().items() if k != "type"})
    bad = _bad(settings, no_type, 40, bad_offset=9)
    decision = Planner(Selection(), checker, set(), load_patch(FIXTURES / "add-type.json")).decide(bad)
    assert decision is not None
    assert dict(raw_headers(decision)) == {
        HEADER_BAD_ROW: b"rum.actions.bad/0/9",
        HEADER_SOURCE: b"rum.actions.raw/3/40",
    }
    assert source_id(bad.row) == decision.source == "rum.actions.raw/3/40"
    entry = ledger_entry(decision, ("rum.actions.raw", 3, 99), NOW)
    assert ledger_errors(entry) == []
    assert entry["source"] == {"topic": "rum.actions.raw", "partition": 3, "offset": 40}
    assert entry["raw"]["offset"] == 99 and entry["patched"] is True
    marker = run_marker("rum.actions.raw", {1: 5, 0: 3}, NOW, finished=False)
    assert ledger_errors(marker) == [] and list(marker["raw_end_offsets"]) == ["0", "1"]
    assert ledger_errors({**marker, "finished": "no"}) != []
    assert ledger_errors({**entry, "record": "run"}) != []


def test_records_that_are_not_bad_rows_are_counted_unreadable(settings: Settings, checker: Checker) -> None:
    planner = Planner(Selection(kinds=frozenset({"parse"})), checker, set())
    good = make_bad_row("schema", [("$", "x")], b"{}", "rum.actions.raw", 0, 1, None)
    altered = make_bad_row("parse", [("$", "x")], b"abc", "rum.actions.raw", 0, 2, None)
    altered["payload"]["size"] = 4  # the bytes were changed on the way
    outcomes = [
        d.outcome if d else None
        for d in (
            planner.decide(BadRow("bad", 0, 0, None)),
            planner.decide(BadRow("bad", 0, 1, {"kind": "parse"})),
            planner.decide(BadRow("bad", 0, 2, good)),
            planner.decide(BadRow("bad", 0, 3, altered)),
        )
    ]
    assert outcomes == ["unreadable", "unreadable", None, "unreadable"]
    assert planner.summary.outcomes["unreadable"] == 3 and planner.summary.matched == 1
    assert "size says 4" in planner.summary.examples["unreadable"][2].errors[0][1]


def test_recover_names_a_bad_option_before_touching_kafka(tmp_path: Path, test_mmdb: Path) -> None:
    # A port nobody listens on: the options are checked first, so each error is the option's own.
    env = {"RUM_KAFKA_BOOTSTRAP": "127.0.0.1:1", "RUM_GEOIP_DATABASE": str(test_mmdb)}
    patch = tmp_path / "fix.json"
    patch.write_text('{"op": "add", "path": "/type", "value": "action"}')
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "no such type"}')
    cases = {
        ("--since", "yesterday"): "cannot read the time 'yesterday'",
        ("--error", "value ["): "not a valid regular expression",
        ("--patch", str(patch)): "must be a non-empty JSON array",
        ("--schema", str(schema)): "not a valid JSON Schema",
    }
    for args, message in cases.items():
        result = CliRunner().invoke(main, ["recover", *args], env=env)
        assert result.exit_code == 1 and message in result.output, result.output
    result = CliRunner().invoke(main, ["recover", "--kind", "typo"], env=env)
    assert result.exit_code == 2 and "'typo' is not one of" in result.output
