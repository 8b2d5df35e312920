"""One generator per hostile input class, shared by the regression tests, the fuzz seeds and the bench.

Each class returns the raw payload of the ``i``-th input of that class;
inputs differ with ``i`` (so caches are exercised as an attacker would) and
``size`` scales the classes whose weight is the point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from tests.factory import CLIENT_IP, DATE, minimal_action

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{major}.0.0.0 Safari/537.36"
)


def action(i: int, **fields: Any) -> dict[str, Any]:
    """A valid raw action with ``fields`` added (or replacing the defaults)."""
    return minimal_action(
        date=DATE + i,
        **{
            "application": {"id": "shop"},
            "session": {"id": f"s-{i % 97}"},
            "action": {"id": f"a-{i}", "type": "custom", "target": {"name": "checkout"}},
            "view": {"url": "https://shop.example/cart?utm_source=news"},
            "context": {"value": 42.12},
            "network": {"client": {"ip": CLIENT_IP}},
            "http": {"useragent": CHROME.format(major=120)},
            **fields,
        },
    )


def _dumps(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def ua_absurd_version(i: int, size: int) -> bytes:
    ua = CHROME.format(major="9" * (20 + i % 30))
    if i % 2:
        ua = f"Mozilla/5.0 (Linux; Android {'9' * (25 + i % 10)}; K) Chrome/120.0.0.0 Mobile Safari/537.36"
    return _dumps(action(i, http={"useragent": ua}))


def ua_huge_non_ascii(i: int, size: int) -> bytes:
    return _dumps(action(i, http={"useragent": f"Mozilla/5.0 ({i}) " + "é日" * (size // 2)}))


def ua_distinct(i: int, size: int) -> bytes:
    return _dumps(action(i, http={"useragent": CHROME.format(major=f"{i}.{i * 7}") + " x" * 400}))


def ip_huge(i: int, size: int) -> bytes:
    return _dumps(action(i, network={"client": {"ip": f"fe80::{i % 65536:x}%" + "z" * size}}))


def ip_distinct(i: int, size: int) -> bytes:
    return _dumps(action(i, network={"client": {"ip": f"2001:480:{i % 65536:x}:{i // 65536:x}::1"}}))


def big_integers(i: int, size: int) -> bytes:
    text = _dumps(action(i, context={"value": 1, "n": 0, "items": [0]}))
    big = str(10**29 + i).encode()
    return text.replace(b'"n":0', b'"n":' + big).replace(b"[0]", b"[-" + big + b"]")


def url_credentials(i: int, size: int) -> bytes:
    return _dumps(action(i, view={"url": f"https://user{i}:secret@shop.example/cart?x={i}"}))


def url_idna(i: int, size: int) -> bytes:
    host = "bücher.example" if i % 2 else "BÜCHER。example"
    return _dumps(action(i, view={"url": f"https://{host}/p/{i}", "referrer": f"https://{host}/"}))


def url_backslash(i: int, size: int) -> bytes:
    return _dumps(action(i, view={"url": f"https://shop.example\\evil.example/{i}\\x"}))


def url_many_parameters(i: int, size: int) -> bytes:
    query = "&".join(f"k{j}=v{i}" for j in range(1036))
    return _dumps(action(i, view={"url": f"https://shop.example/?{query}"}))


def url_huge(i: int, size: int) -> bytes:
    segment = "/a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8"
    path = segment * (size // (2 * len(segment)))
    return _dumps(action(i, view={"url": f"https://shop.example{path}?{'a=b&' * (size // 8)}{i}"}))


def control_bytes(i: int, size: int) -> bytes:
    return bytes([1 + i % 30]) * size


def not_utf8(i: int, size: int) -> bytes:
    return b"\xff" * size


#: Every class: name -> generator(i, size) -> payload.
CLASSES: dict[str, Callable[[int, int], bytes]] = {
    "ua_absurd_version": ua_absurd_version,
    "ua_huge_non_ascii": ua_huge_non_ascii,
    "ua_distinct": ua_distinct,
    "ip_huge": ip_huge,
    "ip_distinct": ip_distinct,
    "big_integers": big_integers,
    "url_credentials": url_credentials,
    "url_idna": url_idna,
    "url_backslash": url_backslash,
    "url_many_parameters": url_many_parameters,
    "url_huge": url_huge,
    "control_bytes": control_bytes,
    "not_utf8": not_utf8,
}
#: Classes that must still give an enriched action (with a warning); the rest are bad rows.
KEPT = frozenset(CLASSES) - {"control_bytes", "not_utf8"}
