"""The in-flight byte budget: how many request bytes the intake holds at once, in all and per client.

Bytes are counted as they are held (read from the socket, then decompressed),
not as a request announces them: a client that sends its headers and then
stalls holds nothing. One client address may hold only its share of the
budget, so a few clients cannot starve the others; IPv6 clients count per
/64, the block a single host usually draws its addresses from.
"""

from __future__ import annotations

import ipaddress
import math


def client_key(address: str | None) -> str:
    """The key a client's bytes are counted under: its IPv4 address, its IPv6 /64, or ``?``."""
    if address is None:
        return "?"
    if ":" not in address:
        return address  # IPv4, as client_ip wrote it: no need to parse it again
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return address


class ByteBudget:
    """Bytes of request bodies held at once; a request that does not fit is refused, not queued."""

    def __init__(self, limit: int, client_limit: int | None = None) -> None:
        """``client_limit``: the most one client key may hold (default: the whole ``limit``)."""
        self.limit = limit
        self.client_limit = min(limit, client_limit if client_limit is not None else limit)
        self.used = 0
        self.by_client: dict[str, int] = {}

    @classmethod
    def shared(cls, limit: int, share: float, largest_request: int) -> ByteBudget:
        """A budget of which one client holds at most ``share``, and never less than one largest request."""
        return cls(limit, max(math.ceil(limit * share), largest_request))

    def fits(self, client: str, size: int) -> bool:
        """True when ``size`` more bytes for ``client`` fit now (nothing is reserved)."""
        return self.used + size <= self.limit and self.by_client.get(client, 0) + size <= self.client_limit

    def try_acquire(self, client: str, size: int) -> bool:
        """Reserve ``size`` bytes for ``client`` if they fit; False otherwise."""
        if not self.fits(client, size):
            return False
        self.used += size
        self.by_client[client] = self.by_client.get(client, 0) + size
        return True

    def release(self, client: str, size: int) -> None:
        """Give back ``size`` bytes ``client`` reserved."""
        self.used -= size
        left = self.by_client.get(client, 0) - size
        if left > 0:
            self.by_client[client] = left
        else:
            self.by_client.pop(client, None)  # an idle client leaves nothing behind
