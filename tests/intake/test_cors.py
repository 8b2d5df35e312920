"""CORS headers and the Origin check, as plain functions of the allowed origins and request headers."""

from __future__ import annotations

import pytest
from aiohttp import web

from pipeline.intake.cors import add_cors, allowed_origin, origin_refused, preflight

SHOP = ("https://shop.example",)


@pytest.mark.parametrize(
    ("origins", "headers", "refused"),
    [
        ((), {"Origin": "https://evil.example"}, False),  # no list: anyone may write
        (("*",), {"Origin": "https://evil.example"}, False),
        (("https://shop.example", "*"), {"Origin": "https://evil.example"}, False),
        (SHOP, {"Origin": "https://shop.example"}, False),
        (SHOP, {"Origin": "https://shop.example/"}, False),  # a trailing slash is the same origin
        (SHOP, {}, False),  # no Origin: a server or a tool, checked by its token instead
        (SHOP, {"Origin": "https://evil.example"}, True),
        (SHOP, {"Origin": "null"}, True),  # sandboxed frames and local files
        (SHOP, {"Origin": "http://shop.example"}, True),  # another scheme is another origin
        (SHOP, {"Origin": "https://shop.example:8443"}, True),
    ],
)
def test_origin_refused(origins: tuple[str, ...], headers: dict[str, str], refused: bool) -> None:
    assert origin_refused(origins, headers) is refused


@pytest.mark.parametrize(
    ("origins", "headers", "allowed"),
    [
        (("*",), {}, "*"),
        (("*",), {"Origin": "https://any.example"}, "*"),
        (SHOP, {"Origin": "https://shop.example"}, "https://shop.example"),
        (SHOP, {"Origin": "https://shop.example/"}, "https://shop.example/"),  # echoed as sent
        (SHOP, {"Origin": "https://evil.example"}, None),
        (SHOP, {}, None),
        ((), {"Origin": "https://shop.example"}, None),  # no list: no page may read answers
    ],
)
def test_allowed_origin(origins: tuple[str, ...], headers: dict[str, str], allowed: str | None) -> None:
    assert allowed_origin(origins, headers) == allowed


def test_add_cors_for_a_listed_origin_varies_by_origin_and_exposes_retry_after() -> None:
    response = web.Response(status=429)
    add_cors(SHOP, {"Origin": "https://shop.example"}, response)
    assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert response.headers["Vary"] == "Origin"
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"


def test_add_cors_for_any_origin_needs_no_vary() -> None:
    response = web.Response()
    add_cors(("*",), {"Origin": "https://shop.example"}, response)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in response.headers


def test_add_cors_leaves_a_refused_origin_without_headers() -> None:
    response = web.Response()
    add_cors(SHOP, {"Origin": "https://evil.example"}, response)
    assert not any(name.startswith("Access-Control-") for name in response.headers)


def test_preflight_allows_post_with_the_headers_asked_for() -> None:
    headers = {"Origin": "https://shop.example", "Access-Control-Request-Headers": "content-type, x-trace"}
    response = preflight(SHOP, headers)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert response.headers["Access-Control-Allow-Headers"] == "content-type, x-trace"
    assert response.headers["Access-Control-Max-Age"] == "86400"


def test_preflight_without_requested_headers_names_the_usual_ones() -> None:
    response = preflight(("*",), {"Origin": "https://shop.example"})
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type, DD-API-KEY"


def test_preflight_from_another_origin_is_answered_without_permissions() -> None:
    response = preflight(SHOP, {"Origin": "https://evil.example"})
    assert response.status == 204
    assert "Access-Control-Allow-Methods" not in response.headers
