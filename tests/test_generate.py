"""The traffic generator: reproducible, realistic, and malformed exactly as announced."""

from __future__ import annotations

import collections
import importlib.util
import ipaddress
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.generate import (
    CATALOG,
    FALLBACK_USER_AGENTS,
    MALFORMED_KINDS,
    ONE_MIB,
    GeneratedMessage,
    TrafficGenerator,
    ZipfSampler,
    exact_malformed,
)

START = 1_764_340_000_000
SPAN = 3_600_000
CATALOG_NAMES = {name for name, _, _ in CATALOG}
UUID4_HEX = re.compile(r"^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$")


def _events(messages: list[GeneratedMessage]) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in messages if m.malformed is None]


def _depth_and_attributes(value: Any) -> tuple[int, int]:
    """Nesting depth (the top container is level 1) and object keys counted at every depth."""
    if isinstance(value, dict):
        children = list(value.values())
        attributes = len(value)
    elif isinstance(value, list):
        children, attributes = value, 0
    else:
        return 0, 0
    depth = 0
    for child in children:
        d, a = _depth_and_attributes(child)
        depth, attributes = max(depth, d), attributes + a
    return depth + 1, attributes


def _geolite2_path() -> Path | None:
    """The GeoLite2 City file shipped in the maxminddb_geolite2 package, if installed."""
    spec = importlib.util.find_spec("_maxminddb_geolite2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "GeoLite2-City.mmdb"
    return path if path.is_file() else None


def _full_corpus() -> list[str] | None:
    try:
        from pipeline.enrich.browser import load_user_agents
    except (ImportError, AttributeError):
        return None
    agents = load_user_agents()
    return agents if len(set(agents)) >= 60 else None


@pytest.fixture(scope="module")
def stream() -> list[GeneratedMessage]:
    return list(TrafficGenerator(seed=11, start_ms=START, span_ms=SPAN).messages(20_000))


@pytest.fixture(scope="module")
def events(stream: list[GeneratedMessage]) -> list[dict[str, Any]]:
    return _events(stream)


# -- determinism -------------------------------------------------------------


def test_same_seed_gives_the_same_bytes() -> None:
    a = list(TrafficGenerator(seed=3, start_ms=START, malformed_share=0.05).messages(2_000))
    b = list(TrafficGenerator(seed=3, start_ms=START, malformed_share=0.05).messages(2_000))
    assert a == b


def test_each_call_restarts_the_same_stream() -> None:
    gen = TrafficGenerator(seed=3, start_ms=START)
    assert list(gen.messages(500)) == list(gen.messages(500))


def test_different_seeds_differ() -> None:
    a = [m.value for m in TrafficGenerator(seed=1, start_ms=START).messages(200)]
    b = [m.value for m in TrafficGenerator(seed=2, start_ms=START).messages(200)]
    assert a != b
    assert len(set(a) & set(b)) == 0


def test_exact_malformed_is_deterministic() -> None:
    assert exact_malformed(3_000, 40, seed=9, start_ms=START) == exact_malformed(
        3_000, 40, seed=9, start_ms=START
    )


def test_default_start_is_the_last_span() -> None:
    import time

    now = int(time.time() * 1000)
    gen = TrafficGenerator(seed=0, span_ms=60_000)
    assert now - 60_000 - 5_000 <= gen.start_ms <= now
    dates = [e["date"] for e in _events(list(gen.messages(100)))]
    assert all(gen.start_ms <= d <= gen.start_ms + 60_000 for d in dates)


# -- good actions ------------------------------------------------------------


def test_good_messages_carry_the_raw_action_fields(stream: list[GeneratedMessage]) -> None:
    assert all(m.malformed is None for m in stream)
    for m in stream:
        e = orjson.loads(m.value)
        assert e["type"] == "action"
        assert type(e["date"]) is int and START <= e["date"] <= START + SPAN
        assert e["application"] == {"id": "shop"}
        assert (e["service"], e["env"]) == ("shop-web", "prod")
        assert isinstance(e["version"], str)
        sid = e["session"]["id"]
        assert m.key is None or m.key == sid.encode()
        assert "usr" not in e or e["usr"]["id"].startswith("u-")
        view = e["view"]
        assert view["url"].startswith("https://shop.example/")
        assert isinstance(view["id"], str) and isinstance(view["referrer"], str)
        assert view["name"].startswith("/") and "?" not in view["name"]
        action = e["action"]
        assert UUID4_HEX.match(action["id"])
        assert action["type"] == "custom"
        assert isinstance(action["target"]["name"], str)
        assert isinstance(e["context"], dict)
        ipaddress.ip_address(e["network"]["client"]["ip"])
        assert isinstance(e["http"]["useragent"], str)
        _, attributes = _depth_and_attributes(e)
        assert attributes < 100


def test_keys_are_session_ids_with_a_few_missing(stream: list[GeneratedMessage]) -> None:
    missing = sum(m.key is None for m in stream) / len(stream)
    assert 0.002 < missing < 0.03


def test_action_ids_are_unique(events: list[dict[str, Any]]) -> None:
    assert len({e["action"]["id"] for e in events}) == len(events)


def test_action_mix(events: list[dict[str, Any]]) -> None:
    names = collections.Counter(e["action"]["target"]["name"] for e in events)
    for name in ("checkout", "add_to_cart", "search", "newsletter_signup"):
        assert names[name] > 0, name
    assert names["checkout"] > 0.05 * len(events)
    assert names["search"] > names["newsletter_signup"]


def test_contexts_by_action(events: list[dict[str, Any]]) -> None:
    by_name = collections.defaultdict(list)
    for e in events:
        by_name[e["action"]["target"]["name"]].append(e["context"])
    for ctx in by_name["checkout"]:
        value = ctx["value"]
        assert type(value) is float and round(value, 2) == value and 5 <= value <= 500
        assert ctx["currency"] == "EUR"
        items = ctx["items"]
        assert isinstance(items, list) and 1 <= len(items) <= 6
        assert set(items) <= CATALOG_NAMES and len(set(items)) == len(items)
    assert len({len(c["items"]) for c in by_name["checkout"]}) >= 4
    assert statistics.median(c["value"] for c in by_name["checkout"]) < 100  # log-normal: most carts small
    for ctx in by_name["add_to_cart"]:
        assert ctx["item"] in CATALOG_NAMES
        assert type(ctx["price"]) is float and type(ctx["quantity"]) is int and ctx["quantity"] >= 1
    for ctx in by_name["search"]:
        assert isinstance(ctx["query"], str) and type(ctx["results"]) is int and ctx["results"] >= 0
    assert any(c["results"] == 0 for c in by_name["search"])


def test_global_context_is_merged_in_some_events(events: list[dict[str, Any]]) -> None:
    plans = collections.Counter(e["context"].get("plan") for e in events)
    assert plans["free"] and plans["pro"] and plans[None]
    assert any("ab_test" in e["context"] for e in events)


def test_urls_look_like_a_shop(events: list[dict[str, Any]]) -> None:
    urls = [e["view"]["url"] for e in events]
    assert any(re.match(r"^https://shop\.example/product/\d+", u) for u in urls)
    assert any(u.startswith("https://shop.example/search?q=") for u in urls)
    assert any(u.startswith("https://shop.example/category/") for u in urls)
    assert any(u.startswith("https://shop.example/cart") for u in urls)
    assert any("utm_source=" in u for u in urls)
    assert any("#" in u for u in urls)
    assert any(e["view"]["referrer"].startswith("https://shop.example/") for e in events)
    # A session keeps its view id while it stays on the same page.
    views = collections.defaultdict(set)
    for e in events:
        views[e["view"]["id"]].add((e["session"]["id"], e["view"]["url"]))
    assert len(views) < len(events)
    assert all(len(v) == 1 for v in views.values())


def test_a_session_keeps_its_user_agent_ip_and_user(events: list[dict[str, Any]]) -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    for e in events:
        sig = (e["http"]["useragent"], e["network"]["client"]["ip"], e.get("usr", {}).get("id"))
        assert seen.setdefault(e["session"]["id"], sig) == sig


def test_dates_roughly_increase(events: list[dict[str, Any]]) -> None:
    dates = [e["date"] for e in events]
    tenth = len(dates) // 10
    assert max(dates[:tenth]) < min(dates[-tenth:])
    step = SPAN / len(dates)
    assert all(abs(d - (START + step * (i + 0.5))) <= 2_001 + step for i, d in enumerate(dates))
    assert dates != sorted(dates)  # jitter: some arrive out of order


def test_zipf_like_skew(events: list[dict[str, Any]]) -> None:
    for field in (lambda e: e["session"]["id"], lambda e: e["http"]["useragent"]):
        counts = collections.Counter(map(field, events))
        top = counts.most_common(1)[0][1]
        assert top >= 10 * statistics.median(counts.values())
    ips = collections.Counter(e["network"]["client"]["ip"] for e in events)
    assert ips.most_common(1)[0][1] >= 10 * statistics.median(ips.values())
    assert len(ips) > 300  # and a long tail


def test_given_user_agents_are_used() -> None:
    agents = ["agent-a", "agent-b", "Googlebot/2.1"]
    gen = TrafficGenerator(seed=1, start_ms=START, user_agents=agents)
    seen = {e["http"]["useragent"] for e in _events(list(gen.messages(2_000)))}
    assert seen == set(agents)


def test_falls_back_to_built_in_user_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "pipeline.enrich.browser", None)
    gen = TrafficGenerator(seed=1, start_ms=START)
    assert set(gen.user_agents) == set(FALLBACK_USER_AGENTS)
    assert "Googlebot" in gen.user_agents[-1]  # bots go to the rare tail


def test_many_user_agents_with_the_full_corpus(events: list[dict[str, Any]]) -> None:
    if _full_corpus() is None:
        pytest.skip("pipeline.enrich.browser.load_user_agents is not available (full UA corpus)")
    assert len({e["http"]["useragent"] for e in events}) >= 50


def test_ips_geolocate_in_many_countries(events: list[dict[str, Any]]) -> None:
    path = _geolite2_path()
    if path is None:
        pytest.skip("GeoLite2-City.mmdb not found in the maxminddb_geolite2 package")
    import geoip2.database
    import geoip2.errors

    countries: collections.Counter[str] = collections.Counter()
    families: collections.Counter[str] = collections.Counter()
    with geoip2.database.Reader(str(path)) as reader:
        for ip in {e["network"]["client"]["ip"] for e in events}:
            addr = ipaddress.ip_address(ip)
            if addr.is_private:
                families["private"] += 1
                with pytest.raises(geoip2.errors.AddressNotFoundError):
                    reader.city(ip)
                continue
            families[f"v{addr.version}"] += 1
            iso = reader.city(ip).country.iso_code
            assert iso, ip  # every public address resolves to a country
            countries[iso] += 1
    assert len(countries) >= 25, sorted(countries)
    assert families["v6"] > 0 and families["private"] > 0


# -- malformed messages ------------------------------------------------------


def _is_parse_fault(value: bytes) -> bool:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        return True
    return False


def _is_schema_fault(value: bytes) -> bool:
    obj = orjson.loads(value)
    if not isinstance(obj, dict):
        return True
    action = obj.get("action", {})
    return (
        obj.get("type") != "action"
        or type(obj.get("date")) is not int
        or not isinstance(obj.get("context"), dict)
        or action.get("type") != "custom"
        or "name" not in action.get("target", {})
    )


def test_exact_malformed_count_kinds_and_spread() -> None:
    n, bad = 12_000, 300
    messages = exact_malformed(n, bad, seed=4, start_ms=START)
    assert len(messages) == n
    positions = [i for i, m in enumerate(messages) if m.malformed is not None]
    assert len(positions) == bad
    kinds = collections.Counter(messages[i].malformed for i in positions)
    assert set(kinds) == set(MALFORMED_KINDS) and min(kinds.values()) == bad // 3
    for quarter in range(4):  # spread over the whole stream
        assert any(quarter * n // 4 <= p < (quarter + 1) * n // 4 for p in positions)
    assert len(_events(messages)) == n - bad


@pytest.mark.parametrize("bad", [0, 1, 2, 3])
def test_exact_malformed_small_counts(bad: int) -> None:
    messages = exact_malformed(5, bad, seed=1, start_ms=START)
    assert sum(m.malformed is not None for m in messages) == bad


def test_exact_malformed_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        exact_malformed(5, 6)


def test_each_fault_kind_is_what_it_says() -> None:
    messages = exact_malformed(6_000, 600, seed=8, start_ms=START)
    for m in messages:
        if m.malformed == "parse":
            assert _is_parse_fault(m.value), m.value[:200]
        elif m.malformed == "schema":
            assert not _is_parse_fault(m.value) and _is_schema_fault(m.value), m.value[:200]
        elif m.malformed == "size":
            assert len(m.value) < ONE_MIB  # Kafka's default limit accepts them
            depth, attributes = _depth_and_attributes(orjson.loads(m.value))
            assert depth > 20 or attributes > 1000
        else:
            assert not _is_schema_fault(m.value)


def test_parse_faults_include_invalid_utf8() -> None:
    parse = [m.value for m in exact_malformed(3_000, 300, seed=2, start_ms=START) if m.malformed == "parse"]
    invalid_utf8 = 0
    for value in parse:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            invalid_utf8 += 1
    assert 0 < invalid_utf8 < len(parse)


def test_huge_variant_only_when_allowed() -> None:
    sizes = [
        len(m.value)
        for m in exact_malformed(600, 150, seed=5, start_ms=START, allow_huge=True)
        if m.malformed == "size"
    ]
    assert any(s > ONE_MIB for s in sizes) and all(s < ONE_MIB + 64 * 1024 for s in sizes)


def test_malformed_share() -> None:
    messages = list(TrafficGenerator(seed=6, start_ms=START, malformed_share=0.1).messages(6_000))
    kinds = collections.Counter(m.malformed for m in messages)
    assert 450 < sum(v for k, v in kinds.items() if k) < 750
    assert max(kinds[k] for k in MALFORMED_KINDS) - min(kinds[k] for k in MALFORMED_KINDS) <= 1


def test_validator_agrees_with_the_announced_kinds() -> None:
    validate = pytest.importorskip("pipeline.validate")
    validator = validate.RawValidator()
    for m in exact_malformed(3_000, 300, seed=12, start_ms=START, allow_huge=True):
        result = validator.check(m.value)
        got = result.kind if isinstance(result, validate.Failure) else None
        assert got == m.malformed, (m.malformed, result, m.value[:200])


# -- building blocks ---------------------------------------------------------


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        TrafficGenerator(malformed_share=1.5)
    with pytest.raises(ValueError):
        TrafficGenerator(user_agents=[])


@given(
    n=st.integers(min_value=1, max_value=500),
    s=st.floats(min_value=0.0, max_value=3.0),
    u=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_zipf_sampler_stays_in_range(n: int, s: float, u: float) -> None:
    assert 0 <= ZipfSampler(n, s).pick(lambda: u) < n


def test_zipf_sampler_prefers_low_ranks() -> None:
    import random

    rng = random.Random(0)
    sampler = ZipfSampler(100, 1.0)
    counts = collections.Counter(sampler.pick(rng.random) for _ in range(20_000))
    assert counts[0] > 5 * counts[9] > 0
