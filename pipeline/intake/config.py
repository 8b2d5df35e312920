"""Parsing of the intake's settings values: client tokens and trusted proxy networks.

Only the standard library here: :mod:`pipeline.settings` calls these while
validating, before anything of the HTTP server is imported.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

#: Application id of a token that may send events of any application.
ANY_APPLICATION = "*"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_client_tokens(value: Any) -> dict[str, str]:
    """Client tokens as ``{token: application_id}``.

    Accepts a mapping, a JSON object, or ``token=application_id`` pairs
    separated by commas (``pub123=shop,pub456=*``). ``*`` lets a token send
    events of any application. Raises ValueError naming the bad entry by its
    number: tokens are credentials, never echoed.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a valid JSON object: {exc.msg}") from None
        else:
            pairs: dict[str, str] = {}
            for number, item in enumerate(text.split(","), 1):
                token, sep, application = (part.strip() for part in item.partition("="))
                if not sep:
                    raise ValueError(f"entry {number}: expected token=application_id")
                pairs[token] = application
            value = pairs
    if not isinstance(value, dict):
        raise ValueError("expected token=application_id[,...] or a JSON object")
    tokens: dict[str, str] = {}
    for number, (token, application) in enumerate(value.items(), 1):
        if not isinstance(token, str) or not token or any(c.isspace() for c in token):
            raise ValueError(f"entry {number}: a client token must be a non-empty string without spaces")
        if not isinstance(application, str) or not application:
            raise ValueError(f"entry {number}: the application id must be a non-empty string")
        tokens[token] = application
    return tokens


def parse_networks(value: Any) -> tuple[IpNetwork, ...]:
    """Networks from CIDRs or addresses, comma-separated or as a list (``10.0.0.0/8, ::1``)."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("expected CIDRs separated by commas, e.g. 10.0.0.0/8,127.0.0.1")
    networks = []
    for item in items:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        text = str(item).strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR network: {text!r}") from None
    return tuple(networks)


def parse_origins(value: Any) -> tuple[str, ...]:
    """Allowed CORS origins: ``*`` or comma-separated origins such as ``https://shop.example``."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("expected origins separated by commas (or a list), e.g. https://shop.example")
    origins = []
    for item in items:
        origin = str(item).strip().rstrip("/")
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"an origin is * or starts with http:// or https://, got {origin!r}")
        origins.append(origin)
    return tuple(origins)
