"""The shop's data tables: address ranges that locate where they say, and consistent catalogues."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.enrich.geoip_db import NOT_PUBLIC, default_database_path, open_database, resolve
from pipeline.enrich.useragent import parse_user_agent, user_agent_fields
from pipeline.shopdata import (
    ACTIONS,
    BOT_MARKERS,
    CATALOG,
    CATEGORIES,
    FALLBACK_USER_AGENTS,
    IPV4_RANGES,
    IPV6_RANGES,
    PRIVATE_RANGES,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RANGES: list[tuple[str, str]] = [
    *((country, cidr) for country, (_, cidrs) in IPV4_RANGES.items() for cidr in cidrs),
    *((country, cidr) for country, cidrs in IPV6_RANGES.items() for cidr in cidrs),
]


def _samples(network: Network, rng: random.Random) -> list[str]:
    """The first, last and a few random addresses of ``network``."""
    size = network.num_addresses
    offsets = {1, size // 2, size - 2, *(rng.randrange(1, size - 1) for _ in range(5))}
    return [str(network[offset]) for offset in sorted(offsets)]


@pytest.fixture(scope="module")
def lookup() -> Iterator[Callable[[str], Any]]:
    reader, city = open_database(default_database_path())
    yield city
    reader.close()


@pytest.mark.parametrize(("country", "cidr"), RANGES)
def test_addresses_of_a_range_locate_to_its_country(
    lookup: Callable[[str], Any], country: str, cidr: str
) -> None:
    rng = random.Random(cidr)
    for ip in _samples(ipaddress.ip_network(cidr), rng):
        geo = resolve(lookup, ip)
        assert isinstance(geo, dict) and geo.get("country_iso_code") == country, (ip, geo)


def test_private_ranges_give_no_geo(lookup: Callable[[str], Any]) -> None:
    for cidr in PRIVATE_RANGES:
        assert resolve(lookup, str(ipaddress.ip_network(cidr)[1])) is NOT_PUBLIC


def test_ranges_do_not_overlap_and_weights_are_positive() -> None:
    networks = [ipaddress.ip_network(cidr) for _, cidr in RANGES]
    for i, first in enumerate(networks):
        for second in networks[i + 1 :]:
            assert first.version != second.version or not first.overlaps(second), (first, second)
    assert all(weight > 0 for weight, _ in IPV4_RANGES.values())


def test_catalogue_names_are_unique_with_positive_prices() -> None:
    names = [name for name, _, _ in CATALOG]
    assert len(names) == len(set(names))
    assert all(price > 0 for _, price, _ in CATALOG)
    assert set(CATEGORIES) == {category for _, _, category in CATALOG}
    assert {"checkout", "add_to_cart", "search"} <= {name for name, _ in ACTIONS}


def test_fallback_user_agents_are_real_browsers_and_one_bot() -> None:
    types = [user_agent_fields(parse_user_agent(ua))["device"]["type"] for ua in FALLBACK_USER_AGENTS]
    assert {"desktop", "mobile", "tablet", "bot"} <= set(types)
    bots = [ua for ua in FALLBACK_USER_AGENTS if any(m in ua.lower() for m in BOT_MARKERS)]
    assert [types[FALLBACK_USER_AGENTS.index(ua)] for ua in bots] == ["bot"] * len(bots)
