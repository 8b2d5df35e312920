"""User-agent parsing: the fields written per user agent, device types, and the corpus file.

That :func:`parse_user_agent` agrees with ``user_agents.parse`` over the whole
corpus is checked in tests/enrich/test_browser.py; here is what this module
adds on top: which values are left out, the version limit, the device order.
"""

from __future__ import annotations

import pytest

from pipeline.enrich.useragent import (
    MAX_VERSION_MAJOR,
    is_fast_parsable,
    load_user_agents,
    parse_user_agent,
    user_agent_fields,
)

IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
PIXEL = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)


def fields(ua: str) -> dict[str, dict[str, object]]:
    return user_agent_fields(parse_user_agent(ua))


@pytest.mark.parametrize(
    ("ua", "device"),
    [
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", "bot"),
        (IPAD, "tablet"),
        (PIXEL, "mobile"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "desktop"),
        ("curl/8.4.0", "other"),
    ],
)
def test_device_type_is_the_first_class_that_applies(ua: str, device: str) -> None:
    assert fields(ua)["device"]["type"] == device


def test_a_known_phone_gets_every_field() -> None:
    assert fields(PIXEL) == {
        "browser": {"name": "Chrome Mobile", "version": "120.0.0", "version_major": 120},
        "os": {"name": "Android", "version": "14", "version_major": 14},
        "device": {"type": "mobile", "brand": "Google", "model": "Pixel 8", "name": "Pixel 8"},
    }


@pytest.mark.parametrize("ua", ["", "xyz", "\x00\x01"])
def test_unknown_values_are_left_out_and_device_type_stays(ua: str) -> None:
    assert fields(ua) == {"device": {"type": "other"}}


def test_an_os_without_version_has_no_version_fields() -> None:
    result = fields("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
    assert result["os"] == {"name": "Linux"}


def test_a_major_version_beyond_32_bits_is_left_out_and_noted() -> None:
    notes: list[tuple[str, str]] = []
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/99999999999999.0"
    result = user_agent_fields(parse_user_agent(ua), notes)
    assert result["browser"] == {"name": "Firefox", "version": "99999999999999.0"}
    assert notes == [
        (
            "browser.version_major",
            f"major version of 14 digits is beyond {MAX_VERSION_MAJOR}; version_major left out, "
            "version keeps the text",
        )
    ]


def test_the_largest_32_bit_major_version_is_kept() -> None:
    ua = f"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/{MAX_VERSION_MAJOR}.0"
    assert fields(ua)["browser"]["version_major"] == MAX_VERSION_MAJOR


@pytest.mark.parametrize(
    ("ua", "fast"),
    [("curl/8.4.0", True), ("", True), ("tab\there", False), ("Opéra", False), ("a\x7f", False)],
)
def test_only_printable_ascii_is_fast_parsable(ua: str, fast: bool) -> None:
    assert is_fast_parsable(ua) is fast


def test_the_corpus_reads_its_empty_marker_as_the_empty_string() -> None:
    corpus = load_user_agents()
    assert "" in corpus
    assert "<empty>" not in corpus
    assert len(set(corpus)) == len(corpus)  # each line once: a duplicate would weigh twice in benchmarks
