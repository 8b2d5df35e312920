"""Raw actions for tests: one builder, in the shape the browser SDK and producers send.

Every test that needs a raw action starts here, so that a change of the
raw-action contract (``schemas/raw-action.v1.json``) is made in one place.

- :func:`raw_action` is the typical action of the design document: the shop's
  ``addAction('checkout', {value: 42.12, items: [...]})`` as ``sdk/rum.js``
  builds it (application, session, user, view, action id, context), plus the
  client IP and user agent that the intake stamps (or a producer writing
  straight to Kafka supplies). Keyword arguments replace top-level fields;
  ``None`` removes one. Its ``action.id`` is fixed, so the worker takes two
  of them in one session for copies of one action: actions meant to be
  distinct get their own ``action`` (with another id, or none).
- :func:`minimal_action` has only what the schema requires (type, date,
  ``action.target.name``), for tests where every other field would be noise.
- :func:`sdk_action` is what the browser posts, before the intake stamps it.
- :func:`encoded` gives the bytes a producer would publish.

For many realistic actions (sessions, users, IPs, user agents drawn from real
pools), use :class:`pipeline.generate.TrafficGenerator` instead, as the
benchmarks and integration tests do.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

#: The event time of the typical action (2025-11-28T14:26:40Z), epoch milliseconds.
DATE = 1_764_340_000_000
#: The user agent of the typical action.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
#: A public IPv4 address with a city in the test GeoIP database (tests/fixtures/geoip.json).
CLIENT_IP = "81.2.69.142"

_TYPICAL: dict[str, Any] = {
    "type": "action",
    "date": DATE,
    "application": {"id": "shop"},
    "service": "shop-web",
    "env": "prod",
    "version": "1.4.2",
    "session": {"id": "s-1"},
    "usr": {"id": "u-7"},
    "view": {
        "id": "v-1",
        "url": "https://shop.example/cart?utm_source=news",
        "referrer": "https://www.google.com/",
        "name": "/cart",
    },
    "action": {"id": "6f0c", "type": "custom", "target": {"name": "checkout"}},
    "context": {"value": 42.12, "items": ["tomato", "strawberries"]},
    "network": {"client": {"ip": CLIENT_IP}},
    "http": {"useragent": USER_AGENT},
}

#: Fields the intake stamps on what the SDK sends.
STAMPED = ("network", "http")


def _changed(event: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def raw_action(**changes: Any) -> dict[str, Any]:
    """A new copy of the typical raw action, top-level fields replaced (``None`` removes one).

    >>> raw_action(context={"value": 3})["context"]
    {'value': 3}
    >>> "usr" in raw_action(usr=None)
    False
    """
    return _changed(copy.deepcopy(_TYPICAL), changes)


def minimal_action(name: str = "checkout", date: int = DATE, **changes: Any) -> dict[str, Any]:
    """An action with only the required fields, named ``name`` at ``date``; then ``changes`` as above."""
    return _changed({"type": "action", "date": date, "action": {"target": {"name": name}}}, changes)


def sdk_action(**changes: Any) -> dict[str, Any]:
    """The typical action as the browser SDK posts it: without the client IP and user agent."""
    return raw_action(**{**dict.fromkeys(STAMPED), **changes})


def encoded(event: dict[str, Any]) -> bytes:
    """The JSON bytes of ``event``, as a producer publishes them."""
    return orjson.dumps(event)
