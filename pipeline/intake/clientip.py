"""The client address of a request: the TCP peer, or X-Forwarded-For behind trusted proxies.

Each proxy appends the address it received the request from to
X-Forwarded-For, so the list reads client, proxy 1, proxy 2, ... and only the
entries appended by proxies we trust are believable. Walking it from the right
and skipping trusted addresses gives the first address no trusted proxy would
have invented: that is the client. Anything before it may be forged by the
client and is ignored. A peer that is not a trusted proxy is the client
itself, whatever the header says.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from pipeline.intake.config import IpNetwork

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> IpAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" as some proxies write it
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return address


def _trusted(address: IpAddress, networks: Sequence[IpNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_ip(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[IpNetwork]) -> str | None:
    """The client address as text, or None when the peer is unknown (e.g. a Unix socket).

    ``forwarded_for`` holds the X-Forwarded-For header values in order (a
    request may carry the header several times). An entry that is not an
    address stops the walk: the last trusted hop is then the best we know.
    """
    address = _address(peer) if peer else None
    if address is None:
        return None
    if not trusted or not _trusted(address, trusted):
        return str(address)
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        parsed = _address(hop)
        if parsed is None:
            break
        address = parsed
        if not _trusted(address, trusted):
            break
    return str(address)
