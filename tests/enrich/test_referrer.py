"""Referrer and campaign enrichment: referrer path and type, view.campaign, hostile values bounded."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.enrich.page import PageEnrichment
from pipeline.enrich.referrer import (
    MAX_CAMPAIGN_CHARS,
    MAX_PATH_CHARS,
    ReferrerEnrichment,
    registrable_domain,
)
from pipeline.enrich.registry import ENRICHMENTS
from pipeline.process import Processor
from pipeline.schemas import ENRICHED_ACTION, validate_record
from pipeline.settings import load_settings

PAGE = "https://shop.example/cart"


def enriched(view: Any, referrer_enrichment: ReferrerEnrichment | None = None) -> tuple[Any, list[Any]]:
    """``view`` after the page and referrer enrichments, with their warnings."""
    event: dict[str, Any] = {"type": "action", "view": view}
    warnings: list[Any] = []
    PageEnrichment().enrich(event, warnings)
    (referrer_enrichment or ReferrerEnrichment()).enrich(event, warnings)
    return event["view"], warnings


@pytest.mark.parametrize(
    ("referrer", "page", "kind", "path"),
    [
        (None, PAGE, "direct", None),
        ("", PAGE, "direct", None),
        ("https://www.google.com/", PAGE, "search", "/"),
        ("https://www.google.co.uk/search?q=tomato", PAGE, "search", "/search"),
        ("https://duckduckgo.com", PAGE, "search", "/"),
        ("https://search.brave.com/search?q=x", PAGE, "search", "/search"),
        ("android-app://com.google.android.googlequicksearchbox/", PAGE, "search", "/"),
        ("https://l.facebook.com/l.php?u=x", PAGE, "social", "/l.php"),
        ("https://t.co/AbC123", PAGE, "social", "/AbC123"),
        ("https://www.linkedin.com/feed/", PAGE, "social", "/feed/"),
        ("https://mail.google.com/mail/u/0/", PAGE, "email", "/mail/u/0/"),
        ("https://outlook.live.com/mail/0/inbox", PAGE, "email", "/mail/0/inbox"),
        ("https://webmail.example.org/", PAGE, "email", "/"),
        ("android-app://com.google.android.gm", PAGE, "email", "/"),
        ("https://shop.example/products/42", PAGE, "internal", "/products/42"),
        ("https://www.shop.example/", PAGE, "internal", "/"),
        ("https://blog.shop.co.uk/post", "https://www.shop.co.uk/", "internal", "/post"),
        ("https://other.co.uk/post", "https://www.shop.co.uk/", "referral", "/post"),
        ("https://news.example.net/story?id=1#c", PAGE, "referral", "/story"),
        ("https://shop.example/cart", None, "referral", "/cart"),  # no page host to compare with
        ("https://user:pw@partner.example/x", PAGE, "referral", "/x"),
        ("https://SHOP.example\\deals", PAGE, "internal", "/deals"),  # read as a browser reads it
    ],
)
def test_referrer_type_and_path(referrer: str | None, page: str | None, kind: str, path: str | None) -> None:
    view: dict[str, Any] = {"id": "v"}
    if referrer is not None:
        view["referrer"] = referrer
    if page is not None:
        view["url"] = page
    out, _ = enriched(view)
    assert out["referrer_type"] == kind
    assert out.get("referrer_path") == path


@pytest.mark.parametrize(
    ("query", "campaign"),
    [
        ("", None),
        ("?tag=a", None),
        ("?utm_source=news", {"source": "news"}),
        (
            "?utm_source=news&utm_medium=email&utm_campaign=spring%20sale&utm_term=red+shoes&utm_content=hero",
            {
                "source": "news",
                "medium": "email",
                "name": "spring sale",
                "term": "red shoes",
                "content": "hero",
            },
        ),
        ("?utm_source=&utm_medium=cpc", {"medium": "cpc"}),  # a blank value is no value
        ("?UTM_SOURCE=news&utm_sourcex=1", None),  # the names are exact
    ],
)
def test_campaign_from_the_page_url(query: str, campaign: dict[str, str] | None) -> None:
    out, warnings = enriched({"url": PAGE + query})
    assert out.get("campaign") == campaign
    assert warnings == []


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("shop.example", "shop.example"),
        ("a.b.shop.example", "shop.example"),
        ("www.shop.co.uk", "shop.co.uk"),
        ("shop.co.uk", "shop.co.uk"),
        ("www.shop.de", "shop.de"),
        ("localhost", "localhost"),
        ("81.2.69.142", "81.2.69.142"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_registrable_domain(host: str, domain: str) -> None:
    assert registrable_domain(host) == domain


def test_long_referrer_path_is_cut_with_a_warning() -> None:
    out, warnings = enriched({"url": PAGE, "referrer": "https://blog.example/" + "p" * 10_000})
    assert len(out["referrer_path"]) == MAX_PATH_CHARS
    assert out["referrer"].endswith("p" * 100)  # the referrer itself is kept whole
    assert [(w["enrichment"], w["path"]) for w in warnings] == [("referrer", "view.referrer")]


def test_long_and_repeated_campaign_values_are_bounded_with_warnings() -> None:
    query = f"?utm_source={'s' * 5000}&utm_medium=a&utm_medium=b&utm_medium=c"
    out, warnings = enriched({"url": PAGE + query})
    assert out["campaign"] == {"source": "s" * MAX_CAMPAIGN_CHARS, "medium": "a"}
    assert [w["path"] for w in warnings] == ["view.url_query.utm_source", "view.url_query.utm_medium"]
    assert all(w["enrichment"] == "referrer" for w in warnings)
    assert all(len(w["message"]) < 200 for w in warnings)  # the value is not echoed


def test_a_producers_campaign_fields_stay_and_ours_win() -> None:
    out, _ = enriched({"url": PAGE + "?utm_source=news", "campaign": {"source": "old", "medium": "print"}})
    assert out["campaign"] == {"source": "news", "medium": "print"}


@pytest.mark.parametrize(
    "view",
    [
        None,
        "not a view",
        ["list"],
        {"referrer": 42},
        {"referrer": {"a": 1}},
        {"referrer": "http://[::1"},
        {"referrer": "not a url"},
        {"referrer": "https://x.example/", "url_query": "not an object"},
        {"url": PAGE, "url_query": {"utm_source": ["a", 1]}},
    ],
)
def test_odd_input_never_raises(view: Any) -> None:
    event: dict[str, Any] = {"type": "action", "view": view}
    ReferrerEnrichment().enrich(event, [])
    enriched(view)


def test_counters_and_registration() -> None:
    referrer = ReferrerEnrichment()
    for view in ({"url": PAGE + "?utm_source=a"}, {"url": PAGE, "referrer": "https://www.bing.com/"}):
        enriched(view, referrer)
    stats = referrer.stats()
    assert (stats["direct"], stats["search"], stats["campaigns"], stats["warnings"]) == (1, 1, 1, 0)
    names = {spec.name for spec in ReferrerEnrichment.metrics}
    assert names == {"rum_referrer_actions", "rum_campaign_actions"}
    order = [cls.__name__ for cls in ENRICHMENTS]
    assert order.index("PageEnrichment") < order.index("ReferrerEnrichment")  # reads page's fields


def test_processor_output_validates_against_the_enriched_schema() -> None:
    action = {
        "type": "action",
        "date": 1764340000000,
        "application": {"id": "shop"},
        "view": {
            "url": "https://shop.example/cart?utm_source=news&utm_campaign=" + "c" * 1000,
            "referrer": "https://mail.google.com/mail/u/0/",
        },
        "action": {"type": "custom", "target": {"name": "checkout"}},
    }
    out = Processor(load_settings({})).process(orjson.dumps(action), topic="raw", partition=0, offset=1)
    assert out.enriched
    record = orjson.loads(out.value)
    assert validate_record(ENRICHED_ACTION, record) == []
    view = record["view"]
    assert (view["referrer_type"], view["referrer_path"]) == ("email", "/mail/u/0/")
    assert view["campaign"] == {"source": "news", "name": "c" * MAX_CAMPAIGN_CHARS}
    assert [w["path"] for w in record["pipeline"]["warnings"]] == ["view.url_query.utm_campaign"]
    bad = dict(action, view={"url": PAGE, "referrer_type": "nowhere"})
    assert Processor(load_settings({})).process(orjson.dumps(bad)).bad_kind == "schema"


def test_a_repeated_referrer_gives_the_same_fields_from_the_cache() -> None:
    referrer = ReferrerEnrichment(cache_size=2)
    views = [
        enriched({"url": PAGE, "referrer": f"https://site{i % 3}.example/p{i % 3}"}, referrer)[0]
        for i in range(9)
    ]
    assert [v["referrer_path"] for v in views] == ["/p0", "/p1", "/p2"] * 3
    assert {v["referrer_type"] for v in views} == {"referral"}
    assert referrer.stats()["referral"] == 9
