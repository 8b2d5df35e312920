"""IP policy: keep, truncate or drop ``network.client.ip``, after the geo lookup.

- ``keep``: the address is left as sent.
- ``truncate``: host bits are zeroed, IPv4 to its /24 (``81.2.69.142`` ->
  ``81.2.69.0``) and IPv6 to its /48 (``2001:480:1:2::1`` -> ``2001:480:1::``),
  in the normalised (compressed, lower-case) form. A value that is not an IP
  address cannot be truncated, so it is deleted, with a warning: an address
  we cannot parse must not leak.
- ``drop``: the ``ip`` key is deleted; ``network.client`` and ``network`` stay,
  possibly empty, so the record keeps the shape producers and schemas expect.

A missing, ``null`` or empty-string IP holds nothing to protect and is left
alone by ``truncate`` (``drop`` still deletes the key).
"""

from __future__ import annotations

import functools
import ipaddress
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, Field

from pipeline.enrich.base import Plugin, Warning
from pipeline.settings_sources import Formerly

if TYPE_CHECKING:
    from pipeline.settings import Settings

#: Longest string taken for an address: 45 characters is the longest IPv6
#: text form, the rest leaves room for a zone. Longer strings are malformed,
#: never parsed nor cached, so the caches hold at most this much per key.
MAX_IP_CHARS = 64


class IpPolicy(StrEnum):
    """What happens to ``network.client.ip`` after the geo lookup."""

    keep = "keep"
    truncate = "truncate"  # IPv4 /24, IPv6 /48
    drop = "drop"


class IpPolicySettings(BaseModel):
    """Settings of the IP policy (the intake applies it to the bad rows it writes too)."""

    policy: Annotated[IpPolicy, Formerly("ip_policy")] = Field(
        IpPolicy.keep, description="keep, truncate (IPv4 /24, IPv6 /48) or drop the client IP."
    )


_V4_MASK = (1 << 32) - (1 << 8)  # keeps the /24
_V6_MASK = (1 << 128) - (1 << 80)  # keeps the /48
# A 6to4 address (2002:AABB:CCDD::/48) carries a whole IPv4 address in bits
# 16-48, so its /48 would keep the full client address: keep 16 + 24 bits.
_V6_6TO4_MASK = (1 << 128) - (1 << 88)


def truncate_ip(ip: str) -> str | None:
    """``ip`` with its host bits zeroed (IPv4 /24, IPv6 /48), or None if it is not an IP address.

    An IPv4-mapped IPv6 address (``::ffff:81.2.69.142``) is an IPv4 client and
    becomes ``81.2.69.0``. A zone (``%eth0``) is removed.
    """
    if not isinstance(ip, str) or len(ip) > MAX_IP_CHARS:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        else:
            mask = _V6_6TO4_MASK if addr.sixtofour is not None else _V6_MASK
            return str(ipaddress.IPv6Address(int(addr) & mask))
    return str(ipaddress.IPv4Address(int(addr) & _V4_MASK))


class IpPolicyEnrichment(Plugin):
    """Applies ``enrich.ip_policy.policy`` to ``network.client.ip``; runs after geo."""

    name: ClassVar[str] = "ip_policy"
    settings_model: ClassVar[type[BaseModel]] = IpPolicySettings

    def __init__(self, policy: IpPolicy = IpPolicy.keep, *, cache_size: int = 50000) -> None:
        """``cache_size`` bounds the memo of truncated addresses (0 disables it)."""
        self.policy = IpPolicy(policy)
        # Parsing and re-formatting an IPv6 address costs ~13 µs; the same
        # clients come back, so remember the results (C-implemented LRU).
        self._truncate = functools.lru_cache(maxsize=cache_size)(truncate_ip)
        self._counts = {"truncated": 0, "dropped": 0, "malformed_ip": 0}

    @classmethod
    def from_settings(cls, settings: Settings) -> IpPolicyEnrichment:
        """Build from ``enrich.ip_policy.policy`` and ``enrich.geo.cache_size``."""
        # The addresses are those geo caches, so its cache size bounds this memo too.
        from pipeline.enrich.geo import GeoSettings

        cache_size = settings.section(GeoSettings).cache_size
        return cls(settings.section(IpPolicySettings).policy, cache_size=cache_size)

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        """Keep, truncate or delete ``event["network"]["client"]["ip"]`` in place."""
        if self.policy is IpPolicy.keep:
            return
        network = event.get("network")
        if not isinstance(network, dict):
            return
        client = network.get("client")
        if not isinstance(client, dict) or "ip" not in client:
            return
        if self.policy is IpPolicy.drop:
            del client["ip"]
            self._counts["dropped"] += 1
            return
        ip = client["ip"]
        if ip is None or ip == "":
            return
        # Strings beyond MAX_IP_CHARS skip the cache: its keys stay small, so
        # ip_cache_size entries hold at most ~300 bytes each.
        small = isinstance(ip, str) and len(ip) <= MAX_IP_CHARS
        truncated = self._truncate(ip) if small else None
        if truncated is None:
            del client["ip"]
            self._counts["dropped"] += 1
            self._counts["malformed_ip"] += 1
            warnings.append(
                {
                    "enrichment": self.name,
                    "path": "network.client.ip",
                    # The value is not echoed: it is what the policy removes.
                    "message": "not a valid IPv4 or IPv6 address, so it cannot be truncated; removed",
                }
            )
            return
        client["ip"] = truncated
        self._counts["truncated"] += 1

    def stats(self) -> dict[str, float]:
        """Addresses truncated, dropped (by policy or as malformed), and malformed."""
        info = self._truncate.cache_info()
        return {**self._counts, "cache_hits": info.hits, "cache_misses": info.misses}
