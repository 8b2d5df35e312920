"""Filters: the RUM Explorer search syntax, one table of matches and one of syntax errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import PipelineError
from pipeline.query.filter import MAX_DEPTH, Filter, FilterSyntaxError, parse_filter

CHECKOUT: dict[str, Any] = {
    "type": "action",
    "date": 1764340000000,
    "usr": {"id": "u-7"},
    "view": {
        "url": "https://shop.example/cart?utm_source=news",
        "url_path": "/product/10074",
        "url_path_group": "/product/?",
    },
    "action": {"type": "custom", "target": {"name": "checkout"}},
    "context": {
        "value": 42.12,
        "quantity": 3,
        "items": ["tomato", "strawberries"],
        "prices": [1.5, 25],
        "code": "42",
        "flag": True,
        "coupon": None,
        "note": "a:b (c)",
        "empty": [],
    },
    "geo": {"country": "France", "city": "Paris"},
    "browser": {"name": "Chrome Mobile", "version_major": 131},
    "device": {"type": "mobile"},
}
ADD_TO_CART: dict[str, Any] = {
    "action": {"target": {"name": "add to cart"}},
    "context": {"value": 10, "items": []},
    "geo": {"country": "Spain"},
    "browser": {"name": "Firefox"},
}

# (filter, event, expected)
MATCHES: list[tuple[str, dict[str, Any], bool]] = [
    # everything
    ("", CHECKOUT, True),
    ("   ", CHECKOUT, True),
    ("*", CHECKOUT, True),
    ("*", {}, True),
    # exact values, case-sensitive
    ("@action.target.name:checkout", CHECKOUT, True),
    ("@action.target.name:checkout", ADD_TO_CART, False),
    ("@action.target.name:Checkout", CHECKOUT, False),
    ("@geo.country:France", CHECKOUT, True),
    ("@type:action", CHECKOUT, True),
    # quoted phrases
    ('@action.target.name:"add to cart"', ADD_TO_CART, True),
    ('@action.target.name:"add to"', ADD_TO_CART, False),
    ('@browser.name:"Chrome Mobile"', CHECKOUT, True),
    ('@browser.name:"Chrome*"', CHECKOUT, False),  # wildcards are literal inside quotes
    ('@context.note:"a:b (c)"', CHECKOUT, True),
    # wildcards at the start, middle and end; ? is one character
    ("@browser.name:Chrome*", CHECKOUT, True),
    ("@browser.name:chrome*", CHECKOUT, False),
    ("@browser.name:*Mobile", CHECKOUT, True),
    ("@browser.name:C*e*M*", CHECKOUT, True),
    ("@view.url_path:/product/*", CHECKOUT, True),
    ("@view.url_path:/cart/*", CHECKOUT, False),
    ("@geo.country:Fr?nce", CHECKOUT, True),
    ("@geo.country:Fr?", CHECKOUT, False),
    ("@context.items:straw*", CHECKOUT, True),
    ("@context.value:4*", CHECKOUT, False),  # wildcards match strings only
    # escaping
    ("@view.url:https\\://shop.example/*", CHECKOUT, True),
    ("@view.url_path_group:/product/\\?", CHECKOUT, True),
    ("@view.url_path_group:/product/\\*", CHECKOUT, False),
    ("@context.note:a\\:b\\ \\(c\\)", CHECKOUT, True),
    # existence
    ("@geo.country:*", CHECKOUT, True),
    ("@geo.country:*", {}, False),
    ("@context.coupon:*", CHECKOUT, False),  # null counts as missing
    ("@context.empty:*", CHECKOUT, False),  # an empty list too
    ("@context:*", CHECKOUT, True),
    ("-@geo.region:*", CHECKOUT, True),
    # numbers
    ("@context.value:>10", CHECKOUT, True),
    ("@context.value:>42.12", CHECKOUT, False),
    ("@context.value:>=42.12", CHECKOUT, True),
    ("@context.value:<42.12", CHECKOUT, False),
    ("@context.value:<=42.12", CHECKOUT, True),
    ("@context.value:<1e3", CHECKOUT, True),
    ("@context.value:>-5", CHECKOUT, True),
    ("@context.value:42.12", CHECKOUT, True),
    ("@context.quantity:3.0", CHECKOUT, True),
    ("@context.value:[10 TO 42.12]", CHECKOUT, True),
    ("@context.value:[10 TO 20]", CHECKOUT, False),
    ("@context.value:[10 TO 20]", ADD_TO_CART, True),
    ("@context.value:{10 TO 20]", ADD_TO_CART, False),  # exclusive low end
    ("@context.value:[42.12 TO *]", CHECKOUT, True),
    ("@context.value:[* TO 42}", CHECKOUT, False),
    ("@browser.version_major:>=100", CHECKOUT, True),
    # numeric strings: equal as text, never compared as numbers
    ("@context.code:42", CHECKOUT, True),
    ("@context.code:42.0", CHECKOUT, False),
    ("@context.code:>10", CHECKOUT, False),
    ("@context.code:[10 TO 50]", CHECKOUT, False),
    # string ranges compare lexicographically
    ("@geo.country:[A TO G]", CHECKOUT, True),
    ("@geo.country:[G TO Z]", CHECKOUT, False),
    ("@geo.country:[France TO *]", CHECKOUT, True),
    # booleans
    ("@context.flag:true", CHECKOUT, True),
    ("@context.flag:false", CHECKOUT, False),
    ("@context.quantity:true", CHECKOUT, False),
    # list attributes: ANY element
    ("@context.items:tomato", CHECKOUT, True),
    ("@context.items:banana", CHECKOUT, False),
    ("-@context.items:tomato", CHECKOUT, False),
    ("-@context.items:banana", CHECKOUT, True),
    ("@context.prices:>20", CHECKOUT, True),
    ("@context.prices:[2 TO 20]", CHECKOUT, False),
    ("@context.items:tomato", ADD_TO_CART, False),
    # missing attributes
    ("@geo.city:Paris", ADD_TO_CART, False),
    ("-@geo.city:Paris", ADD_TO_CART, True),
    ("NOT @geo.city:Paris", ADD_TO_CART, True),
    ("@context.missing:>0", CHECKOUT, False),
    ("-@context.missing:>0", CHECKOUT, True),
    ("@context.coupon:null", CHECKOUT, False),
    # boolean operators and precedence
    ("@action.target.name:checkout @geo.country:France", CHECKOUT, True),
    ("@action.target.name:checkout @geo.country:Spain", CHECKOUT, False),
    ("@action.target.name:checkout AND @context.value:>10", CHECKOUT, True),
    ("@geo.country:Spain OR @geo.country:France", CHECKOUT, True),
    ("@geo.country:Spain OR @geo.country:Italy", CHECKOUT, False),
    ("@geo.country:France OR @geo.country:Spain @context.value:>100", CHECKOUT, True),  # AND first
    ("(@geo.country:France OR @geo.country:Spain) @context.value:>100", CHECKOUT, False),
    ("@geo.country:Spain @context.value:>100 OR @device.type:mobile", CHECKOUT, True),
    ("@geo.country:Spain AND (@context.value:>100 OR @device.type:mobile)", CHECKOUT, False),
    ("-@geo.country:France", CHECKOUT, False),
    ("NOT @geo.country:Spain", CHECKOUT, True),
    ("NOT NOT @geo.country:France", CHECKOUT, True),
    ("-(@geo.country:Spain OR @geo.country:Italy)", CHECKOUT, True),
    ("NOT (@geo.country:France AND @device.type:mobile)", CHECKOUT, False),
    ("NOT @geo.country:France OR @device.type:mobile", CHECKOUT, True),  # NOT binds to one term
    (
        "((@geo.country:France) AND ((@context.items:tomato OR @context.items:x) -@usr.id:u-8))",
        CHECKOUT,
        True,
    ),
    ("(((@geo.country:Spain)))", CHECKOUT, False),
    ("@geo.country:France @geo.city:Paris @device.type:mobile @usr.id:u-7", CHECKOUT, True),
    ("@geo.country:Italy OR @geo.city:Rome OR @device.type:tablet OR @usr.id:u-7", CHECKOUT, True),
    ("(@geo.country:France)@device.type:mobile", CHECKOUT, True),
    # the @ of attribute paths is the Explorer's; events have no such key
    ("@usr.id:u-7", CHECKOUT, True),
]


@pytest.mark.parametrize(("text", "event", "expected"), MATCHES)
def test_matches(text: str, event: dict[str, Any], expected: bool) -> None:
    f = parse_filter(text)
    assert f.matches(event) is expected
    assert f.text == text


@pytest.mark.parametrize("text", sorted({text for text, _, _ in MATCHES}))
def test_matching_many_events_at_once_matches_each(text: str) -> None:
    f = parse_filter(text)
    table = [event for _, event, _ in MATCHES]
    results = f.matches_many(table)
    assert len(results) == len(table)
    assert all(a is b for a, b in zip(results, [f.matches(event) for event in table], strict=True))
    assert f.matches_many([]) == []


def test_table_is_large() -> None:
    assert len(MATCHES) >= 45


# (filter, column, start of the message)
SYNTAX_ERRORS: list[tuple[str, int, str]] = [
    ("@action.target.name:checkout)", 29, "unexpected ')'"),
    ("(@a:x", 1, "unclosed '('"),
    ("@a:x (@b:y OR (@c:z)", 6, "unclosed '('"),
    ("()", 2, "empty parentheses"),
    ("@a:", 4, "expected a value after '@a:'"),
    ("@a:x AND", 9, "unexpected end of filter after 'AND'"),
    ("@a:x OR", 8, "unexpected end of filter after 'OR'"),
    ("NOT", 4, "unexpected end of filter after 'NOT'"),
    ("@a:x OR OR @b:y", 9, "unexpected 'OR'"),
    ("AND @a:x", 1, "unexpected 'AND'"),
    ("checkout", 1, "free-text search is not supported; use @attribute:value"),
    ("@a:x checkout", 6, "free-text search is not supported"),
    ("and", 1, "free-text search is not supported"),
    ("action.target.name:checkout", 1, "attributes start with '@': write '@action.target.name:checkout'"),
    ("@geo..country:France", 6, "bad attribute '@geo..country': empty segment"),
    ("@:x", 2, "bad attribute '@': empty path"),
    ("@geo.country", 13, "expected ':' after attribute '@geo.country'"),
    ('@a:"add to cart', 4, "unterminated quoted phrase"),
    ('@a:"x"y', 7, "unexpected 'y' after a quoted phrase"),
    ("@a:>x", 5, "expected a number after '>'"),
    ("@a:>=", 6, "expected a number after '>='"),
    ("@a:[1 TO 2", 4, "unterminated range"),
    ("@a:[1 2]", 4, "bad range: expected '[low TO high]'"),
    ("@a:[20 TO 10]", 4, "empty range: 20 is greater than 10"),
    ("@a:[1 TO 2]x", 12, "unexpected 'x' after a range"),
    ("@view.url:https://shop", 16, "unescaped ':' in a value (escape it as '\\:')"),
    ("@a:f(x)", 5, "unescaped '('"),
    ("@a:x\\", 5, "a backslash at the end escapes nothing"),
    ("- @a:x", 1, "'-' must be directly followed by a term"),
    ("@a:x -", 6, "'-' must be directly followed by a term"),
    ("(" * (MAX_DEPTH + 1) + "@a:x" + ")" * (MAX_DEPTH + 1), MAX_DEPTH + 1, "filter nested deeper"),
]


@pytest.mark.parametrize(("text", "column", "message"), SYNTAX_ERRORS)
def test_syntax_errors(text: str, column: int, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as err:
        parse_filter(text)
    assert err.value.column == column
    assert err.value.reason.startswith(message)
    assert str(err.value) == f"{err.value.reason} at column {column}"
    assert isinstance(err.value, PipelineError)


def test_error_table_is_large() -> None:
    assert len(SYNTAX_ERRORS) >= 12


def test_not_a_string() -> None:
    with pytest.raises(FilterSyntaxError):
        parse_filter(42)  # type: ignore[arg-type]


def test_filter_object() -> None:
    f = parse_filter("@geo.country:France (@context.items:x OR -@geo.country:Spain)")
    assert isinstance(f, Filter)
    assert f.paths == ("geo.country", "context.items")
    assert f == parse_filter(f.text)
    assert hash(f) == hash(parse_filter(f.text))
    assert repr(f).startswith("Filter(")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# Keys the filters below use, so that generated events exercise real matches.
keys = st.sampled_from(["a", "b", "geo", "country", "items", "x"])
events = st.dictionaries(
    keys | st.text(max_size=5), json_values | st.dictionaries(keys, json_values), max_size=5
)
filter_texts = st.text(alphabet="@ab.:*?\"'\\-()[]{}<>=TOANDRN 0123456789xy", max_size=40) | st.text(
    max_size=30
)


@settings(max_examples=500, deadline=None)
@given(filter_texts, events)
def test_parse_never_raises_anything_else(text: str, event: dict[str, Any]) -> None:
    try:
        result = parse_filter(text)
    except FilterSyntaxError as exc:
        assert 1 <= exc.column <= len(text) + 1
    else:
        assert isinstance(result, Filter)
        assert result.matches(event) in (True, False)


QUERIES = [f for f, _, _ in MATCHES] + [
    "@a:x",
    "@a.b:[1 TO 5]",
    "-@geo.country:*",
    "@items:>1 OR @x:y*",
    "@a.b.x.items:x* OR @geo.a.b.country:1",  # paths of four steps and more
    "@a.b.x:* -@items:[a TO c]",
]


@settings(max_examples=300, deadline=None)
@given(events, st.sampled_from(QUERIES))
def test_matching_never_raises(event: dict[str, Any], text: str) -> None:
    assert parse_filter(text).matches(event) in (True, False)
    json.dumps(event, default=str)  # the events are JSON-like


class Attributes(dict):  # type: ignore[type-arg]
    """A dict subclass: filters read it like a dict."""


# Events whose objects may be dict subclasses, nested deep enough for paths of four steps.
deep_events = st.recursive(
    events,
    lambda inner: st.dictionaries(keys, inner | json_values, max_size=3).map(
        lambda d: Attributes(d) if len(d) % 2 else d
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(deep_events, max_size=6), st.sampled_from(QUERIES) | filter_texts)
def test_matching_many_is_matching_each(batch: list[dict[str, Any]], text: str) -> None:
    try:
        f = parse_filter(text)
    except FilterSyntaxError:
        return
    # `is`, not ==: each result is the very bool (a truthy value would not do), in order
    assert all(a is b for a, b in zip(f.matches_many(batch), [f.matches(e) for e in batch], strict=True))
