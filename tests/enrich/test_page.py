"""Page enrichment: view.url_* fields, referrer host, warnings, and never raising."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.enrich.page import (
    ENRICHMENT_ATTRIBUTES,
    MAX_QUERY_PAIRS,
    MAX_URL_CHARS,
    PageEnrichment,
    _urllib_url_fields,
    count_attributes,
    path_group,
    query_object,
    url_fields,
)
from pipeline.enrich.url import MAX_CACHED_HOST_CHARS, _cached_idna_host, _idna_host, normalise_host
from pipeline.settings import load_settings


def enrich(view: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    event: dict[str, Any] = {"type": "action", "view": view}
    warnings: list[dict[str, str]] = []
    PageEnrichment.from_settings(load_settings({})).enrich(event, warnings)
    return event, warnings


def added(url: str) -> dict[str, Any]:
    event, warnings = enrich({"url": url})
    assert warnings == []
    return {k: v for k, v in event["view"].items() if k != "url"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://shop.example/cart?utm_source=news",
            {
                "url_scheme": "https",
                "url_host": "shop.example",
                "url_path": "/cart",
                "url_path_group": "/cart",
                "url_query": {"utm_source": "news"},
            },
        ),
        (
            "https://Shop.Example:8443/product/12345/reviews?page=2#top",
            {
                "url_scheme": "https",
                "url_host": "shop.example",
                "url_port": 8443,
                "url_path": "/product/12345/reviews",
                "url_path_group": "/product/?/reviews",
                "url_query": {"page": "2"},
                "url_hash": "top",
            },
        ),
        (
            "https://shop.example/search?tag=a&tag=b&q=&tag=c&utm_medium=email&utm_campaign=black+friday",
            {
                "url_scheme": "https",
                "url_host": "shop.example",
                "url_path": "/search",
                "url_path_group": "/search",
                "url_query": {
                    "tag": ["a", "b", "c"],
                    "q": "",
                    "utm_medium": "email",
                    "utm_campaign": "black friday",
                },
            },
        ),
        (
            "https://shop.example/order/3fa85f64-5717-4562-b3fc-2c963f66afa6",
            {
                "url_scheme": "https",
                "url_host": "shop.example",
                "url_path": "/order/3fa85f64-5717-4562-b3fc-2c963f66afa6",
                "url_path_group": "/order/?",
            },
        ),
        (
            "HTTP://shop.example",
            {"url_scheme": "http", "url_host": "shop.example", "url_path": "/", "url_path_group": "/"},
        ),
        (
            "http://[2001:DB8::1]:8080/a/",
            {
                "url_scheme": "http",
                "url_host": "2001:db8::1",
                "url_port": 8080,
                "url_path": "/a/",
                "url_path_group": "/a/",
            },
        ),
        (
            "https://shop.example:443/",
            {
                "url_scheme": "https",
                "url_host": "shop.example",
                "url_port": 443,
                "url_path": "/",
                "url_path_group": "/",
            },
        ),
        (
            "https://shop.example/#/checkout/step/2",
            {
                "url_scheme": "https",
                "url_host": "shop.example",
                "url_path": "/",
                "url_path_group": "/",
                "url_hash": "/checkout/step/2",
            },
        ),
        (
            "https://shop.example/cart?#",
            {
                "url_scheme": "https",
                "url_host": "shop.example",
                "url_path": "/cart",
                "url_path_group": "/cart",
            },
        ),
        (
            "https://shop.example/p?a=%C3%A9t%C3%A9&b=1%2B1&flag&=x",
            {
                "url_scheme": "https",
                "url_host": "shop.example",
                "url_path": "/p",
                "url_path_group": "/p",
                "url_query": {"a": "été", "b": "1+1", "flag": "", "": "x"},
            },
        ),
        ("/cart?step=2", {"url_path": "/cart", "url_path_group": "/cart", "url_query": {"step": "2"}}),
        ("", {}),
        (
            "https://münchen.example/straße",
            {
                "url_scheme": "https",
                "url_host": "xn--mnchen-3ya.example",
                "url_path": "/straße",
                "url_path_group": "/straße",
            },
        ),
        (
            "file:///home/user/page.html",
            {
                "url_scheme": "file",
                "url_path": "/home/user/page.html",
                "url_path_group": "/home/user/page.html",
            },
        ),
        (
            "https://shop.example:/x",
            {"url_scheme": "https", "url_host": "shop.example", "url_path": "/x", "url_path_group": "/x"},
        ),
    ],
)
def test_url_fields(url: str, expected: dict[str, Any]) -> None:
    assert added(url) == expected


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/product/12345/reviews", "/product/?/reviews"),
        ("/order/3fa85f64-5717-4562-b3fc-2c963f66afa6", "/order/?"),
        ("/order/3FA85F64-5717-4562-B3FC-2C963F66AFA6/items/7", "/order/?/items/?"),
        ("/commit/9fceb02d0ae598e95dc970b74767f19372d61af8", "/commit/?"),
        ("/u/5f8d0d55b54764421b7156c3/", "/u/?/"),  # 24 hex chars
        ("/s/aB3dE5fG7hI9jK1lM3nO5pQ", "/s/?"),  # opaque token
        ("/1/2/3", "/?/?/?"),
        ("/deadbeef", "/deadbeef"),  # hex, but short: a word
        ("/summer-sale-2024", "/summer-sale-2024"),  # slug
        ("/v2/api", "/v2/api"),
        ("/abcdefghijklmnopqrstuvwxyz", "/abcdefghijklmnopqrstuvwxyz"),  # long, but no digit
        ("/page12345.html", "/page12345.html"),
        ("/", "/"),
    ],
)
def test_path_group(path: str, group: str) -> None:
    assert path_group(path) == group


def test_referrer_host() -> None:
    event, warnings = enrich(
        {"url": "https://shop.example/", "referrer": "https://WWW.Google.com:443/search?q=x"}
    )
    assert event["view"]["referrer_host"] == "www.google.com"
    assert warnings == []


@pytest.mark.parametrize(
    ("referrer", "host"),
    [
        ("", None),  # direct traffic
        (None, None),
        ("/relative", None),
        ("android-app://com.google.android.gm/", "com.google.android.gm"),
        ("http://[2001:db8::1]/", "2001:db8::1"),
    ],
)
def test_referrer_host_only_when_there_is_one(referrer: Any, host: str | None) -> None:
    event, warnings = enrich({"url": "https://shop.example/", "referrer": referrer})
    assert event["view"].get("referrer_host") == host
    assert warnings == []


@pytest.mark.parametrize("view", [None, {}, {"id": "v-1"}, {"url": None}])
def test_missing_view_or_url_adds_nothing(view: Any) -> None:
    event, warnings = enrich(view)
    assert warnings == []
    assert event["view"] == view


def test_no_view_key() -> None:
    event: dict[str, Any] = {"type": "action"}
    warnings: list[dict[str, str]] = []
    PageEnrichment().enrich(event, warnings)
    assert event == {"type": "action"} and warnings == []


@pytest.mark.parametrize(
    ("view", "path"),
    [
        ({"url": "http://[::1"}, "view.url"),
        ({"url": "http://[not-an-ip]/"}, "view.url"),
        ({"url": "http://shop.example:99999/"}, "view.url"),
        ({"url": "http://shop.example:port/"}, "view.url"),
        ({"url": 42}, "view.url"),
        ({"url": ["https://shop.example/"]}, "view.url"),
        ({"url": "https://shop.example/", "referrer": "http://[::1"}, "view.referrer"),
        ({"url": "https://shop.example/", "referrer": 0}, "view.referrer"),
        ("https://shop.example/", "view"),
    ],
)
def test_unusable_values_warn_and_add_nothing(view: Any, path: str) -> None:
    before = dict(view) if isinstance(view, dict) else view
    event, warnings = enrich(view)
    assert len(warnings) == 1
    assert warnings[0]["enrichment"] == "page"
    assert warnings[0]["path"] == path
    assert warnings[0]["message"]
    if path == "view.referrer":
        assert event["view"]["url_host"] == "shop.example"
        assert "referrer_host" not in event["view"]
    else:
        assert event["view"] == before


def test_stats_count_events_and_warnings() -> None:
    page = PageEnrichment()
    page.enrich({"view": {"url": "https://a.example/"}}, [])
    page.enrich({"view": {"url": 1}}, [])
    assert page.stats() == {"events": 2, "warnings": 1}


def test_repeated_values_do_not_share_lists_between_events() -> None:
    url = "https://a.example/?x=1&x=2"
    first, _ = enrich({"url": url})
    first["view"]["url_query"]["x"].append("3")
    second, _ = enrich({"url": url})
    assert second["view"]["url_query"]["x"] == ["1", "2"]


# Strings built from URL pieces reach the fast path and its edge cases far more
# often than arbitrary text does.
URL_PIECES = st.lists(
    st.sampled_from(
        [
            "http",
            "HTTPS",
            "://",
            ":",
            "/",
            "//",
            "?",
            "#",
            "&",
            "=",
            "+",
            "%",
            "%41",
            "%zz",
            "@",
            "[",
            "]",
            "::1",
            "a.example",
            "B.Example",
            "8080",
            "99999",
            "0",
            "id",
            "123",
            "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            " ",
            "\t",
            "\n",
            "\x00",
            "é",
            "ß",
            "ｅ",
            "%C3%A9",
            "x",
            ";",
            "~",
            "*",
        ]
    ),
    max_size=14,
).map("".join)


@given(st.one_of(st.text(), URL_PIECES, URL_PIECES.map(lambda s: "https://a.example" + s)))
@settings(max_examples=500, deadline=None)
def test_fast_path_agrees_with_urlsplit(url: str) -> None:
    try:
        expected: Any = _urllib_url_fields(url)
    except ValueError:
        expected = ValueError
    try:
        got: Any = url_fields(url)
    except ValueError:
        got = ValueError
    assert got == expected


@given(st.text(alphabet=string.printable + "é%+&=", max_size=60))
@settings(max_examples=300, deadline=None)
def test_query_object_matches_parse_qsl(query: str) -> None:
    expected: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in expected:
            previous = expected[key]
            expected[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            expected[key] = value
    assert query_object(query) == expected


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@given(
    url=st.one_of(st.text(), URL_PIECES, JSON_VALUES),
    referrer=st.one_of(st.text(), URL_PIECES, JSON_VALUES),
)
@settings(max_examples=400, deadline=None)
def test_enrich_never_raises(url: Any, referrer: Any) -> None:
    for view in ({"url": url, "referrer": referrer}, url):
        event: dict[str, Any] = {"view": view}
        warnings: list[dict[str, str]] = []
        PageEnrichment().enrich(event, warnings)
        assert all(w["enrichment"] == "page" for w in warnings)


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("https://user:pass@shop.example/cart", "https://shop.example/cart"),
        ("https://user@shop.example:8443/", "https://shop.example:8443/"),
        ("HTTPS://a:b@c@shop.example/x?y=@z", "HTTPS://shop.example/x?y=@z"),
        ("https:\\\\u:p@shop.example\\x", "https:\\\\shop.example\\x"),
        ("ftp://u:p@files.example/f", "ftp://files.example/f"),
    ],
)
def test_credentials_are_removed_from_the_url_with_a_warning(url: str, stripped: str) -> None:
    event, warnings = enrich({"url": url, "referrer": url})
    assert event["view"]["url"] == stripped
    assert event["view"]["referrer"] == stripped
    assert event["view"]["url_host"] == "shop.example" or url.startswith("ftp")
    assert [(w["path"], w["message"]) for w in warnings] == [
        ("view.url", "user name and password removed from the URL"),
        ("view.referrer", "user name and password removed from the URL"),
    ]
    assert "u:p" not in str(warnings) and "user:pass" not in str(warnings)


@pytest.mark.parametrize(
    "url",
    ["mailto:someone@shop.example", "https://shop.example/users/@me", "https://shop.example/?to=a@b"],
)
def test_an_at_sign_outside_the_authority_is_no_credential(url: str) -> None:
    event, warnings = enrich({"url": url})
    assert event["view"]["url"] == url
    assert warnings == []


@pytest.mark.parametrize(
    "url",
    [
        "https://bücher.example/a",
        "https://xn--bcher-kva.example/a",
        "https://BÜCHER.EXAMPLE/a",
        "https://bücher。example/a",  # an ideographic full stop separates labels too
        "https://b%C3%BCcher.example/a",
    ],
)
def test_hosts_are_in_their_ascii_idna_form(url: str) -> None:
    assert added(url)["url_host"] == "xn--bcher-kva.example"
    event, _ = enrich({"referrer": url})
    assert event["view"]["referrer_host"] == "xn--bcher-kva.example"


def test_an_invalid_international_host_is_a_warning() -> None:
    for _ in range(2):  # and again: a failure is not cached
        event, warnings = enrich({"url": "https://\u0300a.example/"})  # a label cannot start with a mark
        assert [w["path"] for w in warnings] == ["view.url"]
        assert "url_host" not in event["view"]


@given(st.text(max_size=40))
def test_cached_international_hosts_map_as_uncached_ones(label: str) -> None:
    host = "é" + label.replace(":", "")  # not ASCII, not an IPv6 literal: the IDNA path

    def mapped(function: Any) -> str:
        try:
            return str(function(host))
        except ValueError as exc:
            return f"error: {exc}"

    first, second = mapped(normalise_host), mapped(normalise_host)  # the second may come from the cache
    assert first == second == mapped(_idna_host)


def test_a_very_long_international_host_is_mapped_without_the_cache() -> None:
    host = "é" * (MAX_CACHED_HOST_CHARS + 1) + ".example"
    with pytest.raises(ValueError, match="not a valid domain name"):  # labels are at most 63 long
        normalise_host(host)
    assert _cached_idna_host.cache_info().currsize <= 1024


@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        ("https://shop.example\\evil.example/", "shop.example", "/evil.example/"),
        ("https:\\\\shop.example\\a\\b?q=\\x", "shop.example", "/a/b"),
        ("https:///shop.example/a", "shop.example", "/a"),
        ("  https://shop.example/a\t\n ", "shop.example", "/a"),
    ],
)
def test_hosts_and_paths_are_read_as_browsers_read_them(url: str, host: str, path: str) -> None:
    fields = added(url)
    assert (fields["url_host"], fields["url_path"]) == (host, path)
    if "?" in url:
        assert fields["url_query"] == {"q": "\\x"}  # the query keeps its backslash


def test_a_url_of_thousands_of_parameters_is_read_up_to_the_limit() -> None:
    query = "&".join(f"k{i}=v" for i in range(1036))
    event: dict[str, Any] = {"type": "action", "view": {"url": f"https://shop.example/?{query}"}}
    warnings: list[dict[str, str]] = []
    PageEnrichment(max_attributes=1000).enrich(event, warnings)
    assert list(event["view"]["url_query"]) == [f"k{i}" for i in range(MAX_QUERY_PAIRS)]
    assert event["view"]["url"] == f"https://shop.example/?{query}"  # the value itself is kept whole
    assert warnings == [
        {
            "enrichment": "page",
            "path": "view.url",
            "message": f"URL has more than {MAX_QUERY_PAIRS} query parameters; "
            f"the url_* fields describe it up to parameter {MAX_QUERY_PAIRS}",
        }
    ]


def test_url_query_stays_within_the_attribute_limit() -> None:
    query = "&".join(f"k{i}=v" for i in range(200))
    event: dict[str, Any] = {
        "type": "action",
        "view": {"url": f"https://shop.example/?{query}"},
        "context": {f"c{i}": i for i in range(800)},
    }
    warnings: list[dict[str, str]] = []
    PageEnrichment(max_attributes=1000).enrich(event, warnings)
    kept = event["view"]["url_query"]
    room = 1000 - ENRICHMENT_ATTRIBUTES - count_attributes({**event, "view": {"url": ""}})
    assert 0 < room < 200
    assert list(kept) == [f"k{i}" for i in range(room)]
    assert warnings == [
        {
            "enrichment": "page",
            "path": "view.url_query",
            "message": f"200 query parameters; the first {room} kept, within the limit of 1000 attributes",
        },
    ]
    assert count_attributes(event) <= 1000


def test_a_long_url_gives_bounded_fields_and_a_warning() -> None:
    segment = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8"
    url = "https://shop.example" + f"/{segment}" * 9000 + "?" + "a=b&" * 40000
    event, warnings = enrich({"url": url})
    view = event["view"]
    assert view["url"] == url  # the value itself is kept whole
    assert all(len(view[k]) <= MAX_URL_CHARS for k in ("url_path", "url_path_group"))
    assert view["url_path"] == url[len("https://shop.example") : MAX_URL_CHARS]
    assert [w["message"] for w in warnings] == [
        f"URL is {len(url)} characters; the url_* fields describe its first {MAX_URL_CHARS}"
    ]
