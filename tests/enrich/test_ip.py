"""IP policy: keep, truncate (IPv4 /24, IPv6 /48) or drop, after geo."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.enrich import REGISTRY, Enrichment
from pipeline.enrich.geo import GeoEnrichment
from pipeline.enrich.ip import IpPolicyEnrichment, truncate_ip
from pipeline.settings import IpPolicy, load_settings
from tests.factory import minimal_action


def action(ip: Any) -> dict[str, Any]:
    """A minimal action carrying ``ip`` as ``network.client.ip``."""
    return minimal_action(network={"client": {"ip": ip}}, context={"value": 1})


def run(enrichment: Any, event: dict[str, Any]) -> list[dict[str, str]]:
    warnings: list[dict[str, str]] = []
    enrichment.enrich(event, warnings)
    return warnings


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("81.2.69.142", "81.2.69.0"),
        ("81.2.69.0", "81.2.69.0"),
        ("10.1.2.255", "10.1.2.0"),
        ("255.255.255.255", "255.255.255.0"),
        ("0.0.0.0", "0.0.0.0"),
        ("2001:480:1:2::1", "2001:480:1::"),
        ("2001:0DB8:ABCD:0012:0000:0000:0000:0001", "2001:db8:abcd::"),  # normalised form
        ("2001:480::1", "2001:480::"),
        ("::1", "::"),
        ("fe80::1%eth0", "fe80::"),  # the zone goes too
        ("::ffff:81.2.69.142", "81.2.69.0"),  # IPv4-mapped: an IPv4 client
        ("2002:5102:458e::1", "2002:5102:4500::"),  # 6to4 embeds 81.2.69.142: keep only its /24
        ("999.1.1.1", None),
        ("not-an-ip", None),
        ("", None),
        ("81.2.69.142 ", None),
        ("81.2.69.0/24", None),
        (12345, None),
        (None, None),
    ],
)
def test_truncate_ip(ip: Any, expected: str | None) -> None:
    assert truncate_ip(ip) == expected


@given(st.ip_addresses(v=4))
def test_truncated_ipv4_is_its_slash_24(addr: Any) -> None:
    truncated = truncate_ip(str(addr))
    assert truncated is not None
    assert truncated.endswith(".0")
    assert truncated.rsplit(".", 1)[0] == str(addr).rsplit(".", 1)[0]


@given(st.ip_addresses(v=6))
def test_truncated_ipv6_has_no_host_bits(addr: Any) -> None:
    truncated = truncate_ip(str(addr))
    assert truncated is not None
    result = ipaddress.ip_address(truncated)
    if addr.ipv4_mapped is not None:
        assert int(result) & 0xFF == 0
    else:
        assert int(result) & ((1 << 80) - 1) == 0


@pytest.mark.parametrize(
    ("policy", "ip", "expected_client", "warned"),
    [
        (IpPolicy.keep, "81.2.69.142", {"ip": "81.2.69.142"}, False),
        (IpPolicy.keep, "999.1.1.1", {"ip": "999.1.1.1"}, False),  # geo already warned
        (IpPolicy.truncate, "81.2.69.142", {"ip": "81.2.69.0"}, False),
        (IpPolicy.truncate, "2001:480:1:2::1", {"ip": "2001:480:1::"}, False),
        (IpPolicy.truncate, "999.1.1.1", {}, True),  # cannot truncate: never leak it
        (IpPolicy.truncate, 3232235777, {}, True),
        (IpPolicy.truncate, "", {"ip": ""}, False),  # empty counts as absent
        (IpPolicy.truncate, None, {"ip": None}, False),
        (IpPolicy.drop, "81.2.69.142", {}, False),
        (IpPolicy.drop, "999.1.1.1", {}, False),
        (IpPolicy.drop, None, {}, False),
    ],
)
def test_policy(policy: IpPolicy, ip: Any, expected_client: dict[str, Any], warned: bool) -> None:
    event = action(ip)
    warnings = run(IpPolicyEnrichment(policy), event)
    # Parents stay in place even when the address is removed.
    assert event["network"] == {"client": expected_client}
    assert event["context"] == {"value": 1}
    if warned:
        assert len(warnings) == 1
        assert warnings[0]["enrichment"] == "ip_policy"
        assert warnings[0]["path"] == "network.client.ip"
        assert str(ip) not in warnings[0]["message"]
    else:
        assert warnings == []


@pytest.mark.parametrize("policy", list(IpPolicy))
@pytest.mark.parametrize(
    "event",
    [
        {"type": "action"},
        {"network": {}},
        {"network": {"client": {}}},
        {"network": "x"},
        {"network": {"client": 1}},
    ],
)
def test_event_without_address_is_untouched(policy: IpPolicy, event: dict[str, Any]) -> None:
    before = copy.deepcopy(event)
    assert run(IpPolicyEnrichment(policy), event) == []
    assert event == before


def test_stats() -> None:
    policy = IpPolicyEnrichment(IpPolicy.truncate, cache_size=10)
    for ip in ["81.2.69.142", "81.2.69.142", "bad"]:
        run(policy, action(ip))
    stats = policy.stats()
    assert (stats["truncated"], stats["dropped"], stats["malformed_ip"]) == (2, 1, 1)
    assert stats["cache_hits"] == 1


def test_from_settings() -> None:
    for value in ("keep", "truncate", "drop"):
        settings = load_settings({"RUM_IP_POLICY": value})
        enrichment: Enrichment = IpPolicyEnrichment.from_settings(settings)
        assert isinstance(enrichment, IpPolicyEnrichment)
        assert enrichment.name == "ip_policy"
        assert enrichment.policy is IpPolicy(value)


def test_registry_runs_the_policy_after_geo() -> None:
    names = list(REGISTRY)
    assert names.index(GeoEnrichment.name) < names.index(IpPolicyEnrichment.name)


@pytest.mark.parametrize("policy", [IpPolicy.truncate, IpPolicy.drop])
def test_geo_uses_the_full_address(tmp_path: Path, build_mmdb, policy: IpPolicy) -> None:
    # A /28 that the truncated address (81.2.69.0) falls outside of: geo can
    # only find it if it runs on the address before the policy.
    path = build_mmdb(
        tmp_path / "small.mmdb",
        [{"network": "81.2.69.192/28", "record": {"country": {"iso_code": "SE", "names": {"en": "Sweden"}}}}],
    )
    geo = GeoEnrichment(path, check_interval=0)
    ip_policy = IpPolicyEnrichment(policy)
    event = action("81.2.69.200")
    warnings: list[dict[str, str]] = []
    for enrichment in (geo, ip_policy):
        enrichment.enrich(event, warnings)
    assert warnings == []
    assert event["geo"] == {"country": "Sweden", "country_iso_code": "SE"}
    assert event["network"]["client"] == ({"ip": "81.2.69.0"} if policy is IpPolicy.truncate else {})

    reversed_order = action("81.2.69.200")
    for enrichment in (ip_policy, geo):
        enrichment.enrich(reversed_order, warnings)
    assert "geo" not in reversed_order


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.ip_addresses().map(str)))
def test_truncate_never_raises_nor_leaks(ip: Any) -> None:
    event = action(ip)
    warnings = run(IpPolicyEnrichment(IpPolicy.truncate, cache_size=0), event)
    client = event["network"]["client"]
    if "ip" in client and client["ip"] not in (None, ""):
        assert client["ip"] == truncate_ip(ip)
    assert len(warnings) <= 1


def test_huge_ip_string_is_removed_with_a_warning_and_not_cached() -> None:
    enrichment = IpPolicyEnrichment(IpPolicy.truncate)
    event = action("fe80::1%" + "z" * 1_000_000)
    warnings = run(enrichment, event)
    assert "ip" not in event["network"]["client"]
    assert [w["path"] for w in warnings] == ["network.client.ip"]
    assert enrichment.stats()["cache_misses"] == 0
