"""Attribute paths: validation, getters, list flattening."""

from __future__ import annotations

import linecache
import traceback

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.query.paths import (
    MISSING,
    PathError,
    compile_many,
    compile_path,
    compile_projection,
    compile_through_list,
    compile_values,
    normalize_path,
    values_at,
)

EVENT = {
    "action": {"target": {"name": "checkout"}},
    "geo": {"country": "France"},
    "usr": {"id": "u-7"},
    "context": {
        "value": 42.12,
        "items": ["tomato", "strawberries"],
        "coupon": None,
        "products": [{"sku": "a", "tags": ["x", "y"]}, {"sku": "b"}, {"other": 1}, "not an object"],
        "matrix": [[1, 2], [3]],
        "a": {"b": {"c": {"d": 4}}},
    },
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("action.target.name", "checkout"),
        ("@action.target.name", "checkout"),
        ("geo.country", "France"),
        ("usr.id", "u-7"),
        ("context.value", 42.12),
        ("context.items", ["tomato", "strawberries"]),
        ("context.coupon", None),
        ("context.a.b.c.d", 4),
        ("context", EVENT["context"]),
        ("geo.city", MISSING),
        ("nothere", MISSING),
        ("geo.country.name", MISSING),  # walking into a string
        ("context.products.sku", MISSING),  # lists are not walked by the raw getter
    ],
)
def test_compile_path(path: str, expected: object) -> None:
    assert compile_path(path)(EVENT) == expected


class Mapping(dict):  # type: ignore[type-arg]
    """A dict subclass on the way: read like a dict."""


@pytest.mark.parametrize(
    "path", ["usr", "@geo.country", "geo.city", "geo.country.name", "context.items", "context.a.b.c.d", "x.y"]
)
def test_compile_many_reads_each_event_like_compile_path(path: str) -> None:
    events = [
        EVENT,
        {},
        {"geo": None, "usr": "u-1", "context": {"a": {"b": []}}},
        {"geo": Mapping(country="Japan"), "x": {"y": None}},
        {"geo": {"country": {"name": "Peru"}}, "context": {"items": [], "a": {"b": {"c": {"d": None}}}}},
        {"geo": "France", "x": [{"y": 1}]},
    ]
    many = compile_many(path)(events)
    one = [compile_path(path)(event) for event in events]
    assert many == one
    assert [value is MISSING for value in many] == [value is MISSING for value in one]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("usr", False),  # one step: nothing on the way
        ("geo.country", False),
        ("geo.city", False),  # absent, through objects only
        ("nothere.at.all", False),
        ("context.items", False),  # a list at the last step is the value, not on the way
        ("context.products.sku", True),
        ("context.products.nothere", True),  # a list on the way, whatever it then finds
        ("context.matrix.x", True),
        ("context.a.b.c.d", False),
        ("geo.country.name", False),  # a string on the way
    ],
)
def test_compile_through_list(path: str, expected: bool) -> None:
    assert compile_through_list(path)(EVENT) is expected


def test_compile_through_list_reads_dict_subclasses_like_dicts() -> None:
    assert compile_through_list("a.b.c")({"a": Mapping(b=[{"c": 1}])}) is True
    assert compile_through_list("a.b.c")({"a": Mapping(b=Mapping(c=1))}) is False


@pytest.mark.parametrize(
    "path", ["usr.id", "geo.country", "context.products.sku", "context.products.tags", "x.y.z", "a.b"]
)
def test_values_behind_a_missing_raw_value_need_a_list_on_the_way(path: str) -> None:
    """What batched readers rely on: where the getter finds nothing, values exist only through a list."""
    events = [
        EVENT,
        {},
        {"usr": None, "a": [{"b": 1}, {"c": 2}]},
        {"usr": [{"id": "u-1"}, {"id": "u-2"}], "x": {"y": [{"z": True}]}},
        {"geo": [{"country": "Peru"}, "Chile"], "a": {"b": None}},
        {"x": [[{"y": {"z": 3}}]], "context": {"products": []}},
    ]
    hidden = [e for e in events if compile_path(path)(e) is MISSING and compile_values(path)(e)]
    assert hidden  # every path has such an event above
    assert all(compile_through_list(path)(e) for e in hidden)


def test_missing_is_falsy_singleton() -> None:
    assert not MISSING
    assert repr(MISSING) == "MISSING"
    assert compile_path("x")(EVENT) is MISSING
    assert compile_path("x")("not a dict") is MISSING


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("geo.country", ["France"]),
        ("context.items", ["tomato", "strawberries"]),
        ("context.value", [42.12]),
        ("context.coupon", []),
        ("geo.city", []),
        ("context.products.sku", ["a", "b"]),
        ("context.products.tags", ["x", "y"]),
        ("context.matrix", [1, 2, 3]),
        ("context.a.b.c.d", [4]),
    ],
)
def test_values_at(path: str, expected: list[object]) -> None:
    assert values_at(EVENT, path) == expected
    assert compile_values(path)(EVENT) == expected


def test_values_of_non_object_event() -> None:
    assert values_at([1, 2], "a") == []
    assert values_at(None, "a.b") == []


@pytest.mark.parametrize(
    ("path", "reason", "offset"),
    [
        ("", "empty path", 0),
        ("@", "empty path", 1),
        ("geo..country", "empty segment", 4),
        (".geo", "empty segment", 0),
        ("geo.", "empty segment", 4),
        ("geo country", "a space is not allowed in a segment", 3),
        ("geo.1st", "'1' is not allowed at the start of a segment", 4),
        ("@@geo", "'@' is not allowed at the start of a segment", 1),
        ("geo.cou:ntry", "':' is not allowed in a segment", 7),
    ],
)
def test_bad_paths(path: str, reason: str, offset: int) -> None:
    with pytest.raises(PathError) as err:
        normalize_path(path)
    assert isinstance(err.value, ValueError)
    assert err.value.reason.startswith(reason)
    assert err.value.offset == offset
    assert str(err.value).startswith(f"bad path {path!r}: {reason}")


def test_good_paths() -> None:
    assert normalize_path("@view.url_path_group") == "view.url_path_group"
    assert normalize_path("context.x-request-id") == "context.x-request-id"
    assert normalize_path("_private") == "_private"


# -- projection: what the rollups keep of a queued action -----------------------------------

KEYS = ("a", "b", "c", "d")
JSON_LEAVES = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["x", "y", ""])
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=20,
)
EVENTS = st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=4)
PATHS = st.lists(st.sampled_from(KEYS), min_size=1, max_size=4).map(".".join)


def walk(event: object, path: str) -> object:
    """The raw value at ``path``, step by step: what every getter must return."""
    value = event
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


@settings(max_examples=300, deadline=None)
@given(events=st.lists(EVENTS, max_size=4), path=PATHS)
def test_getters_of_every_depth_read_like_a_walk(events: list[dict[str, object]], path: str) -> None:
    expected = [walk(event, path) for event in events]
    assert [compile_path(path)(event) for event in events] == expected
    assert compile_many(path)(events) == expected


@settings(max_examples=400, deadline=None)
@given(event=EVENTS, paths=st.lists(PATHS, min_size=1, max_size=5))
def test_projection_reads_like_the_event_for_its_paths(event: dict[str, object], paths: list[str]) -> None:
    projected = compile_projection(paths)(event)
    for path in paths:
        assert compile_path(path)(projected) == compile_path(path)(event)
        assert compile_values(path)(projected) == compile_values(path)(event)
        assert compile_many(path)([projected]) == compile_many(path)([event])
        assert compile_through_list(path)(projected) == compile_through_list(path)(event)


def test_projection_keeps_only_what_its_paths_read() -> None:
    project = compile_projection(["@geo.country", "context.products.sku", "context.a.b", "context.a.b.c.d"])
    projected = project(EVENT)
    assert projected == {
        "geo": {"country": "France"},
        # a list on the way is kept whole; a path that starts another keeps its whole value
        "context": {"products": EVENT["context"]["products"], "a": {"b": {"c": {"d": 4}}}},
    }
    assert projected["context"]["products"] is EVENT["context"]["products"]
    assert projected["geo"] is not EVENT["geo"]  # a new object: the event's own can be freed
    assert project({}) == {}
    assert compile_projection(["usr.id"])({"usr": "not an object"}) == {"usr": "not an object"}


@pytest.mark.parametrize("depth", [7, 8, 9, 16, 60])
def test_deep_projections_copy_like_short_ones(depth: int) -> None:
    # Past a few levels the copy goes on in functions of their own: still a copy of the paths alone.
    keys = [f"k{i}" for i in range(depth)]

    def chain(steps: list[str], leaf: object) -> dict[str, object]:
        node: dict[str, object] = {steps[-1]: leaf, "other": 1}
        for key in reversed(steps[:-1]):
            node = {key: node, "other": 1}
        return node

    event = chain(keys, [1, 2])
    # A second branch that leaves the first one at the deepest level, a missing key and a non-object.
    branch = event
    for key in keys[:-1]:
        branch = branch[key]  # type: ignore[assignment]
    branch["side"] = {"leaf": "x", "other": 1}
    branch["flat"] = "not an object"
    deep = ".".join(keys)
    side = ".".join([*keys[:-1], "side", "leaf"])
    paths = [deep, side, ".".join([*keys[:-1], "flat", "y"]), "absent.z", "other"]
    projected = compile_projection(paths)(event)
    expected = {"other": 1}
    node = expected
    for key in keys[:-1]:
        node[key] = node = {}  # type: ignore[assignment]
    node.update({keys[-1]: [1, 2], "side": {"leaf": "x"}, "flat": "not an object"})
    assert projected == expected
    assert compile_path(deep)(projected) == [1, 2]


def test_projection_walks_dict_subclasses() -> None:
    projected = compile_projection(["geo.country"])({"geo": Mapping(country="France", city="Paris")})
    assert projected == {"geo": {"country": "France"}}


def test_projection_refuses_bad_paths() -> None:
    with pytest.raises(PathError):
        compile_projection(["geo..country"])


class Refusing(dict):  # type: ignore[type-arg]
    """An object whose reads fail: the failure's traceback passes through the generated copier."""

    def get(self, *args: object) -> object:
        raise LookupError("refused")


@pytest.mark.parametrize("depth", [2, 12])
def test_tracebacks_through_a_projection_show_its_source(depth: int) -> None:
    keys = [f"k{i}" for i in range(depth)]
    event: dict[str, object] = {"other": 1}
    node = event
    for key in keys[:-1]:
        node[key] = node = {}  # type: ignore[assignment]
    node[keys[-1]] = Refusing(leaf=1)
    project = compile_projection([".".join([*keys, "leaf"])])
    with pytest.raises(LookupError) as err:
        project(event)
    # The frames of the generated code, with their file names and source lines.
    frames = [entry for entry in err.traceback if str(entry.path).startswith("<projection")]
    assert frames
    line = frames[-1].statement.lines[0]
    assert "v = o" in line and ".get('leaf', MISSING)" in line
    text = "".join(traceback.format_exception(err.value))
    assert 'File "<projection' in text and ".get('leaf', MISSING)" in text
    linecache.checkcache()  # the source stays available: it has no file whose change could be checked
    assert ".get('leaf', MISSING)" in "".join(traceback.format_exception(err.value))
