"""Browser enrichment: same answers as user_agents.parse, cached, and never raising."""

from __future__ import annotations

import random
import re
import tracemalloc
from typing import Any

import orjson
import pytest
import user_agents
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.enrich.browser import (
    MAX_PARSED_CHARS,
    BrowserEnrichment,
    is_fast_parsable,
    load_user_agents,
    parse_user_agent,
)
from pipeline.settings import load_settings

CORPUS = load_user_agents()


def reference(ua: str) -> dict[str, dict[str, Any]]:
    """The expected fields, straight from user_agents.parse and the documented mapping."""
    agent = user_agents.parse(ua)

    def named(family: str, version: tuple[Any, ...], version_string: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if family and family != "Other":
            fields["name"] = family
        if version_string:
            fields["version"] = version_string
        if version and type(version[0]) is int:
            fields["version_major"] = version[0]
        return fields

    if agent.is_bot:
        kind = "bot"
    elif agent.is_tablet:
        kind = "tablet"
    elif agent.is_mobile:
        kind = "mobile"
    elif agent.is_pc:
        kind = "desktop"
    else:
        kind = "other"
    device: dict[str, Any] = {"type": kind}
    for key, value in (
        ("brand", agent.device.brand),
        ("model", agent.device.model),
        ("name", agent.device.family),
    ):
        if value and value != "Other":
            device[key] = value
    expected = {
        "browser": named(agent.browser.family, agent.browser.version, agent.browser.version_string),
        "os": named(agent.os.family, agent.os.version, agent.os.version_string),
        "device": device,
    }
    return {key: value for key, value in expected.items() if value}


def enrich(enrichment: BrowserEnrichment, ua: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    event: dict[str, Any] = {"type": "action", "http": {"useragent": ua}}
    warnings: list[dict[str, str]] = []
    enrichment.enrich(event, warnings)
    return {k: v for k, v in event.items() if k not in ("type", "http")}, warnings


def agent_key(agent: user_agents.parsers.UserAgent) -> tuple[Any, ...]:
    """Everything user_agents derives from a user agent."""
    return (
        agent.browser,
        agent.os,
        agent.device,
        agent.is_bot,
        agent.is_tablet,
        agent.is_mobile,
        agent.is_pc,
        agent.is_touch_capable,
        agent.is_email_client,
        str(agent),
    )


@pytest.fixture
def browser() -> BrowserEnrichment:
    return BrowserEnrichment.from_settings(load_settings({}))


@pytest.mark.parametrize(
    ("ua", "browser_name", "os_name", "device_type"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            "Chrome",
            "Windows",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.2 Safari/605.1.15",
            "Safari",
            "Mac OS X",
            "desktop",
        ),
        (
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Firefox",
            "Ubuntu",
            "desktop",
        ),
        (
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            "Chrome",
            "Chrome OS",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) "
            "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
            "Samsung Internet",
            "Android",
            "mobile",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.2 Mobile/15E148 Safari/604.1",
            "Mobile Safari",
            "iOS",
            "mobile",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.2 Mobile/15E148 Safari/604.1",
            "Mobile Safari",
            "iOS",
            "tablet",
        ),
        (
            "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.3.1 "
            "like Chrome/120.0.6099.230 Safari/537.36",
            "Amazon Silk",
            "Android",
            "tablet",
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
            None,
            "bot",
        ),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot", None, "bot"),
        ("curl/8.4.0", "curl", None, "other"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Mobile/15E148 MicroMessenger/8.0.42(0x18002a2c) NetType/WIFI Language/zh_CN",
            "WeChat Browser",
            "iOS",
            "mobile",
        ),
        ("not a user agent at all", None, None, "other"),
    ],
)
def test_known_user_agents(
    browser: BrowserEnrichment, ua: str, browser_name: str | None, os_name: str | None, device_type: str
) -> None:
    fields, warnings = enrich(browser, ua)
    assert warnings == []
    assert fields.get("browser", {}).get("name") == browser_name
    assert fields.get("os", {}).get("name") == os_name
    assert fields["device"]["type"] == device_type


def test_full_fields_of_one_user_agent(browser: BrowserEnrichment) -> None:
    ua = (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.144 Mobile Safari/537.36"
    )
    fields, _ = enrich(browser, ua)
    assert fields == {
        "browser": {"name": "Chrome Mobile", "version": "120.0.6099", "version_major": 120},
        "os": {"name": "Android", "version": "14", "version_major": 14},
        "device": {"type": "mobile", "brand": "Google", "model": "Pixel 8 Pro", "name": "Pixel 8 Pro"},
    }


def test_corpus_is_large_and_covers_every_device_type(browser: BrowserEnrichment) -> None:
    assert len(CORPUS) >= 60
    assert "" in CORPUS
    assert len(set(CORPUS)) == len(CORPUS)
    assert all(ua == ua.strip() for ua in CORPUS)
    types = {enrich(browser, ua)[0]["device"]["type"] for ua in CORPUS}
    assert types == {"desktop", "mobile", "tablet", "bot", "other"}


@pytest.mark.parametrize("ua", CORPUS)
def test_fast_parse_equals_user_agents(ua: str) -> None:
    assert agent_key(parse_user_agent(ua)) == agent_key(user_agents.parse(ua))


@pytest.mark.parametrize("ua", CORPUS)
def test_enrichment_equals_reference(ua: str) -> None:
    fields, warnings = enrich(BrowserEnrichment(cache_size=0), ua)
    assert warnings == []
    assert fields == reference(ua)


def test_most_of_the_corpus_takes_the_fast_path() -> None:
    assert sum(map(is_fast_parsable, CORPUS)) >= len(CORPUS) - 2


def splice(rng: random.Random) -> str:
    """A corpus user agent cut, joined to another or padded, where bounded regexes reach their limits."""
    ua = rng.choice(CORPUS)
    for _ in range(rng.randint(1, 3)):
        other = rng.choice(CORPUS)
        cut = rng.randint(0, len(ua))
        choice = rng.randrange(4)
        if choice == 0:
            ua = ua[:cut] + other[rng.randint(0, len(other)) :]
        elif choice == 1:
            ua = f"{ua} {'x' * rng.randint(50, 300)} {other}"
        elif choice == 2:
            ua = re.sub(r"\d+", lambda _: str(rng.randint(0, 300)), ua)
        else:
            words = ua.split(" ")
            rng.shuffle(words)
            ua = " ".join(words)
    return ua


@given(st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_fast_parse_equals_user_agents_on_spliced_corpus(rng: random.Random) -> None:
    ua = splice(rng)
    assert agent_key(parse_user_agent(ua)) == agent_key(user_agents.parse(ua))


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_enrich_never_raises_and_equals_reference(ua: str) -> None:
    fields, warnings = enrich(BrowserEnrichment(cache_size=0), ua)
    assert warnings == []
    assert fields == reference(ua)


@pytest.mark.parametrize("http", [None, {}, {"useragent": None}, {"useragent": ""}])
def test_absent_or_empty_user_agent_gives_device_type_other(browser: BrowserEnrichment, http: Any) -> None:
    event: dict[str, Any] = {"type": "action"} if http is None else {"type": "action", "http": http}
    warnings: list[dict[str, str]] = []
    browser.enrich(event, warnings)
    assert warnings == []
    assert event["device"] == {"type": "other"}
    assert "browser" not in event and "os" not in event


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({"http": {"useragent": 42}}, "http.useragent"),
        ({"http": {"useragent": ["Mozilla/5.0"]}}, "http.useragent"),
        ({"http": {"useragent": {"ua": "x"}}}, "http.useragent"),
        ({"http": "Mozilla/5.0"}, "http"),
    ],
)
def test_non_string_user_agent_warns_and_adds_nothing(
    browser: BrowserEnrichment, event: dict[str, Any], path: str
) -> None:
    before = {k: v for k, v in event.items()}
    warnings: list[dict[str, str]] = []
    browser.enrich(event, warnings)
    assert event == before
    assert len(warnings) == 1
    assert warnings[0]["enrichment"] == "browser"
    assert warnings[0]["path"] == path
    assert warnings[0]["message"]
    assert browser.stats()["warnings"] == 1


@given(
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(), st.lists, max_leaves=4)
)
@settings(max_examples=200, deadline=None)
def test_enrich_never_raises_for_any_json_value(value: Any) -> None:
    for event in ({"http": {"useragent": value}}, {"http": value}):
        warnings: list[dict[str, str]] = []
        BrowserEnrichment(cache_size=4).enrich(event, warnings)
        assert "device" in event or warnings


def test_existing_objects_are_merged_not_replaced(browser: BrowserEnrichment) -> None:
    event: dict[str, Any] = {"http": {"useragent": CORPUS[0]}, "device": {"id": "d-1", "type": "stale"}}
    browser.enrich(event, [])
    assert event["device"] == {"id": "d-1", "type": "desktop"}


def test_cache_hits_are_copies(browser: BrowserEnrichment) -> None:
    ua = CORPUS[0]
    first, _ = enrich(browser, ua)
    first["browser"]["name"] = "changed"
    first["device"]["type"] = "changed"
    second, _ = enrich(browser, ua)
    assert second == reference(ua)
    assert browser.stats()["cache_hits"] == 1


def test_cache_never_exceeds_its_size_and_evicts_least_recently_used() -> None:
    browser = BrowserEnrichment(cache_size=3)
    for ua in CORPUS:
        enrich(browser, ua)
        assert browser.stats()["cache_size"] <= 3
    assert browser.stats()["cache_misses"] == len(CORPUS)

    browser = BrowserEnrichment(cache_size=2)
    a, b, c = CORPUS[:3]
    for ua in (a, b, a, c):  # c evicts b, the least recently used
        enrich(browser, ua)
    stats = browser.stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["cold_parses"]) == (1, 3, 3)
    enrich(browser, a)
    assert browser.stats()["cache_hits"] == 2
    enrich(browser, b)
    assert browser.stats()["cache_misses"] == 4
    assert browser.stats()["cold_parses"] == 4


def test_cache_size_zero_disables_the_cache() -> None:
    browser = BrowserEnrichment.from_settings(load_settings({}, ua_cache_size=0))
    for _ in range(3):
        fields, _ = enrich(browser, CORPUS[0])
        assert fields == reference(CORPUS[0])
    stats = browser.stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["cache_size"], stats["cold_parses"]) == (
        0,
        3,
        0,
        3,
    )


def test_stats_count_slow_parses() -> None:
    browser = BrowserEnrichment()
    enrich(browser, "Mozilla/5.0 (Windows NT 10.0) ЯндексБраузер/23.0")
    enrich(browser, "curl/8.4.0")
    stats = browser.stats()
    assert (stats["cold_parses"], stats["slow_parses"], stats["failures"]) == (2, 1, 0)


CHROME_ABSURD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/99999999999999999999.0.0.0 Safari/537.36"
)
ANDROID_ABSURD = (
    "Mozilla/5.0 (Linux; Android 9999999999999999999999999; K) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
)


@pytest.mark.parametrize(
    ("ua", "path", "family"),
    [(CHROME_ABSURD, "browser", "Chrome"), (ANDROID_ABSURD, "os", "Android")],
)
def test_absurd_major_version_is_left_out_with_a_warning(ua: str, path: str, family: str) -> None:
    for browser in (BrowserEnrichment(), BrowserEnrichment(cache_size=0)):
        for _ in range(2):  # a cache hit repeats the warning
            fields, warnings = enrich(browser, ua)
            assert fields[path]["name"] == family
            assert fields[path]["version"].startswith("99999")  # the text is kept
            assert "version_major" not in fields[path]
            assert [w["path"] for w in warnings] == [f"{path}.version_major"]
            assert "beyond 2147483647" in warnings[0]["message"]
            orjson.dumps(fields)  # an int beyond 64 bits would raise here


def test_long_user_agent_is_cut_to_the_characters_parsed_with_a_warning() -> None:
    browser = BrowserEnrichment()
    ua = CORPUS[0] + " " + "é" * 900_000
    event: dict[str, Any] = {"type": "action", "http": {"useragent": ua, "extra": 1}}
    warnings: list[dict[str, str]] = []
    browser.enrich(event, warnings)
    assert event["http"] == {"useragent": ua[:MAX_PARSED_CHARS], "extra": 1}
    fields = {k: v for k, v in event.items() if k not in ("type", "http")}
    assert fields == enrich(BrowserEnrichment(), ua[:MAX_PARSED_CHARS])[0]
    assert warnings == [
        {
            "enrichment": "browser",
            "path": "http.useragent",
            "message": (
                f"user agent is {len(ua)} characters; cut to the first {MAX_PARSED_CHARS}, which were parsed"
            ),
        }
    ]


@pytest.mark.parametrize("length", [MAX_PARSED_CHARS - 1, MAX_PARSED_CHARS])
def test_user_agent_up_to_the_limit_is_kept_whole_without_warning(length: int) -> None:
    ua = (CORPUS[0] + " x" * MAX_PARSED_CHARS)[:length]
    event: dict[str, Any] = {"type": "action", "http": {"useragent": ua}}
    warnings: list[dict[str, str]] = []
    BrowserEnrichment().enrich(event, warnings)
    assert event["http"]["useragent"] == ua
    assert warnings == []


def test_enriched_schema_states_the_user_agent_limit() -> None:
    from pipeline.schemas import ENRICHED_ACTION, load_schema

    http = load_schema(ENRICHED_ACTION)["properties"]["http"]
    assert http["properties"]["useragent"]["maxLength"] == MAX_PARSED_CHARS


def test_non_ascii_user_agent_takes_the_rust_matcher_and_keeps_its_captures() -> None:
    ua = "Mozilla/5.0 (Linux; Android 13; Pixel 7) Chrome/120.0.6099.43 Mobile Safari/537.36 日本語 ©"
    assert not is_fast_parsable(ua)
    fields, warnings = enrich(BrowserEnrichment(cache_size=0), ua)
    assert warnings == []
    assert fields == reference(ua)


def test_cache_is_bounded_in_bytes_whatever_the_user_agents_weigh() -> None:
    browser = BrowserEnrichment(cache_size=10_000, cache_bytes=200_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):  # 20 distinct user agents of about 1 MB each
            enrich(browser, f"{i} " + "Mozilla/5.0 " * 90_000)
        for ua in CORPUS:
            enrich(browser, ua)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    stats = browser.stats()
    assert 0 < stats["cache_bytes"] <= 200_000
    assert stats["cache_size"] < len(CORPUS) + 20  # something was evicted to stay in bounds
    assert held < 1_000_000  # not the 20 MB the user agents weighed


def test_cache_bytes_zero_disables_the_cache() -> None:
    browser = BrowserEnrichment.from_settings(load_settings({}, ua_cache_bytes=0))
    enrich(browser, CORPUS[0])
    enrich(browser, CORPUS[0])
    assert (browser.stats()["cache_hits"], browser.stats()["cold_parses"]) == (0, 2)
