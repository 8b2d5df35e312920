"""RawValidator: size limits, parsing, schema errors with their JSON paths."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.validate import _WALK_BYTES, Failure, RawValidator
from tests.factory import minimal_action, raw_action

VALIDATOR = RawValidator()

TYPICAL = raw_action()
MINIMAL = minimal_action(date=0)


def nested(levels: int) -> dict[str, Any]:
    """An object that is ``levels`` deep on its own: nested(1) == {}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def with_context(context: Any) -> bytes:
    """A minimal valid action carrying ``context``."""
    return orjson.dumps({**MINIMAL, "context": context})


def sized(total: int) -> bytes:
    """A valid action padded (inside context) to exactly ``total`` bytes."""
    empty = with_context({"pad": ""})
    payload = with_context({"pad": "x" * (total - len(empty))})
    assert len(payload) == total
    return payload


# The keys of MINIMAL (type, date, action, target, name) plus "context" are 6 attributes.
ATTRIBUTES_OUTSIDE_CONTEXT = 6

VALID = {
    "typical": orjson.dumps(TYPICAL),
    "minimal": orjson.dumps(MINIMAL),
    "no application": orjson.dumps(raw_action(application=None)),
    "unknown SDK fields pass": orjson.dumps(
        raw_action(_dd={"format_version": 2}, connectivity={"status": "ok"})
    ),
    "extra user attributes": orjson.dumps(raw_action(usr={"id": "u", "plan": "gold", "age": 3})),
    "unicode name": orjson.dumps(raw_action(action={"target": {"name": "paiement réussi ✓"}})),
    "name of 1000 characters": orjson.dumps(raw_action(action={"target": {"name": "é" * 1000}})),
    "context of any content": with_context({"a": [1, None, True, {"b": [[]]}], "c": -1.5e300}),
    "exactly 20 deep (objects)": with_context(nested(19)),
    "exactly 20 deep (arrays count too)": with_context({"l": [[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]}),
    "exactly 1000 attributes": with_context({f"k{i}": i for i in range(1000 - ATTRIBUTES_OUTSIDE_CONTEXT)}),
    "many colons, few attributes": with_context({"s": ":" * 5000, "l": "{[" * 5}),
    "exactly 1 MiB": sized(1 << 20),
}


@pytest.mark.parametrize("payload", VALID.values(), ids=VALID.keys())
def test_valid_actions_are_returned_parsed(payload: bytes) -> None:
    result = VALIDATOR.check(payload)
    assert not isinstance(result, Failure), result
    assert result == orjson.loads(payload)


# (payload, kind, expected (path, message fragment) pairs, in any order)
INVALID: dict[str, tuple[bytes, str, set[tuple[str, str]]]] = {
    "missing action.target.name": (
        orjson.dumps(raw_action(action={"target": {}})),
        "schema",
        {("$.action.target", '"name" is a required property')},
    ),
    "missing date": (orjson.dumps(raw_action(date=None)), "schema", {("$", '"date" is a required property')}),
    "missing action": (orjson.dumps(raw_action(action=None)), "schema", {("$", '"action"')}),
    "date as string": (orjson.dumps(raw_action(date="2025-11-28")), "schema", {("$.date", "integer")}),
    "date with a fraction": (orjson.dumps(raw_action(date=1.5)), "schema", {("$.date", "integer")}),
    "date as boolean": (orjson.dumps(raw_action(date=True)), "schema", {("$.date", "got boolean")}),
    "negative date": (orjson.dumps(raw_action(date=-1)), "schema", {("$.date", "minimum")}),
    "date after year 9999": (orjson.dumps(raw_action(date=10**15)), "schema", {("$.date", "maximum")}),
    "type view": (orjson.dumps(raw_action(type="view")), "schema", {("$.type", '"action" was expected')}),
    "action type click": (
        orjson.dumps(raw_action(action={"type": "click", "target": {"name": "x"}})),
        "schema",
        {("$.action.type", '"custom" was expected')},
    ),
    "empty name": (
        orjson.dumps(raw_action(action={"target": {"name": ""}})),
        "schema",
        {("$.action.target.name", "shorter")},
    ),
    "name of 1001 characters": (
        orjson.dumps(raw_action(action={"target": {"name": "n" * 1001}})),
        "schema",
        {("$.action.target.name", "longer than 1000")},
    ),
    "context as array": (orjson.dumps(raw_action(context=["a"])), "schema", {("$.context", "got array")}),
    "application without id": (
        orjson.dumps(raw_action(application={"name": "shop"})),
        "schema",
        {("$.application", '"id" is a required property')},
    ),
    "usr.id as number": (orjson.dumps(raw_action(usr={"id": 7})), "schema", {("$.usr.id", "string")}),
    "ip as number": (
        orjson.dumps(raw_action(network={"client": {"ip": 1}})),
        "schema",
        {("$.network.client.ip", "string")},
    ),
    "user agent as null": (
        orjson.dumps(raw_action(http={"useragent": None})),
        "schema",
        {("$.http.useragent", "got null")},
    ),
    "top-level array": (b'[{"type": "action"}]', "schema", {("$", "got array")}),
    "top-level string": (b'"action"', "schema", {("$", "got string")}),
    "top-level null": (b"null", "schema", {("$", "got null")}),
    "invalid UTF-8": (b'{"type": "action", "x": "\xff\xfe"}', "parse", {("$", "not valid UTF-8")}),
    "UTF-8 encoded surrogate": (b'{"x": "\xed\xa0\x80"}', "parse", {("$", "not valid UTF-8")}),
    "truncated JSON": (orjson.dumps(TYPICAL)[:-3], "parse", {("$", "not valid JSON")}),
    "empty payload": (b"", "parse", {("$", "not valid JSON")}),
    "NaN": (b'{"type": "action", "date": NaN}', "parse", {("$", "not valid JSON")}),
    "21 deep": (
        with_context(nested(20)),
        "size",
        {("$.context" + ".a" * 19, "nested deeper than 20 levels")},
    ),
    "21 deep through arrays": (
        with_context({"l": [[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}),
        "size",
        {("$.context.l" + "[0]" * 18, "nested deeper than 20 levels")},
    ),
    "2000 deep (beyond the parser's own limit)": (
        b"[" * 2000 + b"]" * 2000,
        "size",
        {("$", "nested deeper")},
    ),
    "1001 attributes": (
        with_context({f"k{i}": i for i in range(1001 - ATTRIBUTES_OUTSIDE_CONTEXT)}),
        "size",
        {("$", "more than 1000 attributes")},
    ),
    "1001 attributes inside arrays": (
        with_context({"l": [{"a": i, "b": i} for i in range(500)]}),
        "size",
        {("$", "more than 1000 attributes")},
    ),
    "1 MiB + 1 byte": (sized((1 << 20) + 1), "size", {("$", "1048577 bytes")}),
    "over 1 MiB and not even JSON": (b"\xff" * (2 << 20), "size", {("$", "more than the limit of 1048576")}),
}


@pytest.mark.parametrize(("payload", "kind", "expected"), INVALID.values(), ids=INVALID.keys())
def test_invalid_actions_fail_with_kind_and_paths(
    payload: bytes, kind: str, expected: set[tuple[str, str]]
) -> None:
    result = VALIDATOR.check(payload)
    assert isinstance(result, Failure), result
    assert result.kind == kind
    assert len(result.errors) == len(expected), result.errors
    for path, fragment in expected:
        assert any(p == path and fragment in m for p, m in result.errors), (path, fragment, result.errors)


def test_every_schema_error_is_reported() -> None:
    event = raw_action(date="yesterday", type="view", context=[1], usr={"id": 7})
    event["action"] = {"type": "tap", "target": {}}
    result = VALIDATOR.check(orjson.dumps(event))
    assert isinstance(result, Failure)
    assert result.kind == "schema"
    assert sorted(path for path, _ in result.errors) == [
        "$.action.target",
        "$.action.type",
        "$.context",
        "$.date",
        "$.type",
        "$.usr.id",
    ]


def test_messages_do_not_echo_large_values() -> None:
    result = VALIDATOR.check(orjson.dumps(raw_action(context=["x" * 100_000])))
    assert isinstance(result, Failure)
    assert all(len(message) < 200 for _, message in result.errors)


def test_integral_float_date_becomes_int() -> None:
    result = VALIDATOR.check(
        b'{"type": "action", "date": 1764340000000.0, "action": {"target": {"name": "a"}}}'
    )
    assert isinstance(result, dict)
    assert result["date"] == 1764340000000
    assert type(result["date"]) is int


def test_limits_are_configurable() -> None:
    strict = RawValidator(max_bytes=200, max_depth=3, max_attributes=7)
    assert isinstance(strict.check(with_context({"a": 1})), dict)
    assert isinstance(strict.check(with_context({"a": []})), dict)
    # MINIMAL is 3 deep already: the top level, action, action.target.
    deep = strict.check(with_context({"a": [{}]}))
    assert isinstance(deep, Failure)
    assert deep.kind == "size"
    assert deep.errors == [("$.context.a[0]", "nested deeper than 3 levels (objects and arrays)")]
    wide = strict.check(with_context({"a": 1, "b": 2}))
    assert isinstance(wide, Failure)
    assert wide.kind == "size"
    assert "more than 7 attributes" in wide.errors[0][1]
    big = strict.check(with_context({"a": "x" * 200}))
    assert isinstance(big, Failure)
    assert big.kind == "size"


# --- properties -------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)
# Objects shaped like actions, so that generated values reach the schema checks.
action_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["action", "view"]) | json_values,
        "date": st.integers(min_value=-5, max_value=2**64 - 1) | json_values,
        "action": st.fixed_dictionaries(
            {},
            optional={
                "type": json_values,
                "target": st.fixed_dictionaries({}, optional={"name": json_values}),
            },
        )
        | json_values,
        "context": json_values,
        "usr": json_values,
        "view": st.dictionaries(st.sampled_from(["id", "url", "name", "extra"]), json_values),
    },
)


def _assert_well_formed(result: dict[str, Any] | Failure) -> None:
    if isinstance(result, Failure):
        assert result.kind in ("parse", "schema", "size")
        assert result.errors
        for path, message in result.errors:
            assert path.startswith("$")
            assert isinstance(message, str)
            assert message
    else:
        assert isinstance(result, dict)


@given(st.binary(max_size=2000))
def test_check_never_raises_on_arbitrary_bytes(payload: bytes) -> None:
    _assert_well_formed(VALIDATOR.check(payload))


@given(json_values | action_like)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_check_never_raises_on_arbitrary_json(value: Any) -> None:
    _assert_well_formed(VALIDATOR.check(orjson.dumps(value)))


def _reference_size_failure(value: Any, max_depth: int, max_attributes: int) -> bool:
    """Straightforward recursive definition of the depth and attribute limits."""

    def depth(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + max((depth(c) for c in v.values()), default=0)
        if isinstance(v, list):
            return 1 + max((depth(c) for c in v), default=0)
        return 0

    def attributes(v: Any) -> int:
        if isinstance(v, dict):
            return len(v) + sum(attributes(c) for c in v.values())
        if isinstance(v, list):
            return sum(attributes(c) for c in v)
        return 0

    return depth(value) > max_depth or attributes(value) > max_attributes


@given(json_values)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_size_limits_match_their_definition(context: Any) -> None:
    # Small limits make the byte-count shortcut and the walk both matter.
    strict = RawValidator(max_depth=4, max_attributes=9)
    event = {**MINIMAL, "context": context}
    result = strict.check(orjson.dumps(event))
    too_big = _reference_size_failure(event, 4, 9)
    assert (isinstance(result, Failure) and result.kind == "size") == too_big


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type":"action","date":1,"action":{"target":{"name":"x"}},"n":1e400}',
        b'{"type":"action","date":1,"action":{"target":{"name":"x"}},"n":' + b"1" * 400 + b',"m":NaN}',
    ],
    ids=["float beyond a double", "NaN beside a huge integer"],
)
def test_numbers_with_no_exact_json_form_stay_parse_failures(payload: bytes) -> None:
    failure = RawValidator().check(payload)
    assert isinstance(failure, Failure) and failure.kind == "parse"


@pytest.mark.parametrize("size", [_WALK_BYTES - 1, _WALK_BYTES, 200_000])
def test_a_large_payload_over_the_limits_is_still_caught(size: int) -> None:
    deep = {"type": "action", "date": 1, "action": {"target": {"name": "x"}}, "context": {"pad": "p" * size}}
    node = deep["context"]
    for _ in range(25):
        node["n"] = {}
        node = node["n"]
    failure = RawValidator().check(orjson.dumps(deep))
    assert isinstance(failure, Failure) and failure.kind == "size"
    wide = {"type": "action", "date": 1, "action": {"target": {"name": "x"}}, "context": {"pad": "p" * size}}
    wide["context"].update({f"k{i}": i for i in range(1001)})
    failure = RawValidator().check(orjson.dumps(wide))
    assert isinstance(failure, Failure) and failure.kind == "size"
