"""URL reading the browser's way: prepare, normalise_host and strip_credentials."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from pipeline.enrich.url import normalise_host, prepare, strip_credentials


@pytest.mark.parametrize(
    ("raw", "host", "path"),
    [
        # A backslash ends the host in a browser; RFC 3986 would make it part of the host.
        ("https://shop.example\\evil.example/", "shop.example", "/evil.example/"),
        # Any run of slashes and backslashes after a special scheme introduces the host.
        ("https:///\\shop.example/a\\b", "shop.example", "/a/b"),
        ("HTTPS:shop.example/p", "shop.example", "/p"),
        # Surrounding spaces and controls are ignored; tabs and newlines inside are removed.
        (" \t\x00https://shop.example/pa\nth\r\x1f ", "shop.example", "/path"),
        ("wss:\\\\socket.example\\live", "socket.example", "/live"),
    ],
)
def test_prepare_finds_the_host_and_path_a_browser_would(raw: str, host: str, path: str) -> None:
    parts = urlsplit(prepare(raw))
    assert (parts.hostname, parts.path) == (host, path)


def test_prepare_leaves_backslashes_in_query_and_fragment() -> None:
    assert prepare("https:\\\\shop.example\\a?q=\\x#h\\") == "https://shop.example/a?q=\\x#h\\"


@pytest.mark.parametrize("url", ["foo://x\\y/z", "mailto:a@b.example", "file:///c:\\dir", "/relative\\path"])
def test_prepare_leaves_other_schemes_and_relative_urls_as_they_are(url: str) -> None:
    assert prepare(url) == url


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Shop.EXAMPLE", "shop.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("b%C3%BCcher.example", "xn--bcher-kva.example"),
        ("ｓｈｏｐ．example", "shop.example"),  # full-width letters and dot
        ("Shop_Name.Example", "shop_name.example"),  # DNS tolerates underscores: kept
        ("[::1]", "[::1]"),
        ("FE80::1%eth0", "fe80::1%eth0"),  # IPv6 with a zone is not percent-decoded
    ],
)
def test_normalise_host_gives_one_ascii_form(host: str, expected: str) -> None:
    assert normalise_host(host) == expected


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("%ff.example", "codec can't decode"),
        ("%E2%98%83.example", "not allowed"),
        ("\u0378.example", "not allowed"),
        ("-ü.example", "hyphen"),
    ],
)
def test_normalise_host_refuses_what_is_no_domain_name(host: str, reason: str) -> None:
    with pytest.raises(ValueError, match="host is not a valid domain name") as raised:
        normalise_host(host)
    assert reason in str(raised.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:p@shop.example/x", "https://shop.example/x"),
        # The host starts after the last "@" of the authority; later ones stay.
        ("https://a@b@shop.example/p?x=@#@", "https://shop.example/p?x=@#@"),
        # Backslashes are slashes for a special scheme, and are kept as written.
        ("https:\\\\u:p@shop.example\\x", "https:\\\\shop.example\\x"),
        ("foo://u@h/p", "foo://h/p"),
        # For another scheme a backslash is part of the authority, so the "@" after it counts.
        ("foo://h\\u@x", "foo://x"),
    ],
)
def test_strip_credentials_cuts_only_the_user_information(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/p",
        "https://shop.example/p?u=a@b",  # "@" in the query is not user information
        "https://shop.example/a@b",  # nor in the path
        "mailto:a@b.example",  # an opaque URL has no authority
        "foo:/u@h",
    ],
)
def test_strip_credentials_is_none_without_user_information(url: str) -> None:
    assert strip_credentials(url) is None
