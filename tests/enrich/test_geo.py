"""GeoEnrichment against a tiny database built from tests/fixtures/geoip.json."""

from __future__ import annotations

import logging
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geoip2.database
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.enrich import Enrichment
from pipeline.enrich.geo import GeoEnrichment, default_database_path
from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from tests.factory import minimal_action
from tests.mmdb_fixture import LONDON

SAN_DIEGO = {
    "country": "United States",
    "country_iso_code": "US",
    "country_subdivision": "California",
    "city": "San Diego",
    "continent": "North America",
    "continent_code": "NA",
    "location": {"latitude": 32.7773, "longitude": -117.1008, "accuracy_radius": 10},
    "timezone": "America/Los_Angeles",
}


def action(ip: Any = None, **extra: Any) -> dict[str, Any]:
    """A raw action carrying ``ip`` as ``network.client.ip``."""
    return minimal_action(network={"client": {"ip": ip}}, **extra)


def run(geo: GeoEnrichment, event: dict[str, Any]) -> list[dict[str, str]]:
    warnings: list[dict[str, str]] = []
    geo.enrich(event, warnings)
    return warnings


@pytest.fixture
def geo(geoip_db: Path) -> Iterator[GeoEnrichment]:
    enrichment = GeoEnrichment(geoip_db, cache_size=100, check_interval=0)
    yield enrichment
    enrichment.close()


def test_fixture_database_reads_back(geoip_db: Path) -> None:
    with geoip2.database.Reader(str(geoip_db)) as reader:
        assert reader.metadata().database_type == "GeoIP2-City"
        city = reader.city("81.2.69.142")
        assert (city.country.iso_code, city.city.name, city.subdivisions[0].iso_code) == (
            "GB",
            "London",
            "ENG",
        )
        assert isinstance(city.location.latitude, float)
        assert city.location.accuracy_radius == 10
        assert city.city.geoname_id == 2643743
        assert reader.city("2001:480::1").country.iso_code == "US"


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("81.2.69.142", LONDON),
        ("81.2.69.1", LONDON),
        ("::ffff:81.2.69.142", LONDON),  # IPv4 client seen through a dual-stack socket
        ("2001:480::1", SAN_DIEGO),
        ("2001:0480:0000:0000:0000:0000:0000:0001", SAN_DIEGO),
        ("2001:480::1%eth0", SAN_DIEGO),
        (
            "89.160.20.112",
            {
                "country": "Sweden",
                "country_iso_code": "SE",
                "country_subdivision": "Östergötland County",
                "city": "Linköping",
                "continent": "Europe",
                "continent_code": "EU",
                "location": {"latitude": 58.4167, "longitude": 15.6167, "accuracy_radius": 76},
                "timezone": "Europe/Stockholm",
            },
        ),
        (
            "216.160.83.56",
            {
                "country": "United States",
                "country_iso_code": "US",
                "country_subdivision": "Washington",
                "city": "Milton",
                "continent": "North America",
                "continent_code": "NA",
                "location": {"latitude": 47.2513, "longitude": -122.3149, "accuracy_radius": 22},
                "timezone": "America/Los_Angeles",
            },
        ),
        # Two subdivisions: the first (largest) one is reported.
        (
            "2.125.160.216",
            {
                **LONDON,
                "city": "Boxford",
                "location": {"latitude": 51.75, "longitude": -1.25, "accuracy_radius": 100},
            },
        ),
        # Country only: every unknown key is left out.
        ("67.43.156.1", {"country": "Bhutan", "country_iso_code": "BT"}),
    ],
)
def test_public_address_gets_geo(geo: GeoEnrichment, ip: str, expected: dict[str, Any]) -> None:
    event = action(ip)
    assert run(geo, event) == []
    assert event["geo"] == expected
    assert event["network"]["client"]["ip"] == ip  # geo never rewrites the address


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",  # private
        "192.168.1.1",
        "172.16.5.4",
        "fd00::1",  # unique local
        "127.0.0.1",  # loopback
        "::1",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "169.254.1.1",  # link-local
        "fe80::1",
        "fe80::1%eth0",
        "224.0.0.1",  # multicast
        "ff02::1",
        "0.0.0.0",  # unspecified
        "::",
        "100.64.0.1",  # carrier-grade NAT
        "192.0.2.1",  # documentation
        "2001:db8::1",
        "::ffff:10.0.0.1",
    ],
)
def test_non_public_address_gives_no_geo_and_no_warning(geo: GeoEnrichment, ip: str) -> None:
    event = action(ip)
    assert run(geo, event) == []
    assert "geo" not in event
    stats = geo.stats()
    assert (stats["not_public"], stats["no_geo"], stats["malformed_ip"]) == (1, 1, 0)


@pytest.mark.parametrize("ip", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "81.2.70.1"])
def test_public_address_unknown_to_database_gives_no_geo_and_no_warning(geo: GeoEnrichment, ip: str) -> None:
    event = action(ip)
    assert run(geo, event) == []
    assert "geo" not in event
    assert geo.stats()["not_found"] == 1


@pytest.mark.parametrize(
    "ip",
    [
        "999.1.1.1",
        "not-an-ip",
        "81.2.69.142 ",
        "81.2.69",
        "1.2.3.4/24",
        "2001:480::1::2",
        "١٢.٣.٤.٥",
        12345,
        3.5,
        True,
        ["81.2.69.142"],
        {"v": 4},
    ],
)
def test_malformed_address_gives_no_geo_and_one_warning(geo: GeoEnrichment, ip: Any) -> None:
    event = action(ip)
    warnings = run(geo, event)
    assert "geo" not in event
    assert len(warnings) == 1
    warning = warnings[0]
    assert (warning["enrichment"], warning["path"]) == ("geo", "network.client.ip")
    assert warning["message"]
    # The address may be personal data that the IP policy removes later.
    assert str(ip).strip() not in warning["message"]
    assert event["network"]["client"]["ip"] == ip
    assert geo.stats()["malformed_ip"] == 1


@pytest.mark.parametrize(
    "event",
    [
        {"type": "action"},
        {"network": {}},
        {"network": {"client": {}}},
        action(None),
        action(""),  # an empty string is treated as absent, not as a malformed address
        {"network": "81.2.69.142"},
        {"network": {"client": "81.2.69.142"}},
    ],
)
def test_absent_address_does_nothing(geo: GeoEnrichment, event: dict[str, Any]) -> None:
    before = repr(event)
    assert run(geo, event) == []
    assert repr(event) == before
    assert geo.stats()["lookups"] == 0


def test_cache_hits_and_misses(geo: GeoEnrichment) -> None:
    for ip in ["81.2.69.142", "81.2.69.142", "10.0.0.1", "10.0.0.1", "8.8.8.8"]:
        run(geo, action(ip))
    stats = geo.stats()
    assert (stats["lookups"], stats["cache_hits"], stats["cache_misses"]) == (5, 2, 3)
    assert (stats["not_public"], stats["not_found"], stats["no_geo"]) == (2, 1, 3)


def test_cache_is_bounded(geoip_db: Path) -> None:
    geo = GeoEnrichment(geoip_db, cache_size=3, check_interval=0)
    for i in range(50):
        run(geo, action(f"81.2.69.{i}"))
    assert geo.stats()["cache_size"] == 3
    run(geo, action("81.2.69.49"))  # most recent entries stay
    assert geo.stats()["cache_hits"] == 1


def test_cache_can_be_disabled(geoip_db: Path) -> None:
    geo = GeoEnrichment(geoip_db, cache_size=0, check_interval=0)
    for _ in range(3):
        event = action("81.2.69.142")
        run(geo, event)
        assert event["geo"] == LONDON
    assert (geo.stats()["cache_hits"], geo.stats()["cache_size"]) == (0, 0)


def test_cached_geo_is_not_shared_between_events(geo: GeoEnrichment) -> None:
    first = action("81.2.69.142")
    run(geo, first)
    first["geo"]["city"] = "changed downstream"
    first["geo"]["location"]["latitude"] = 0.0
    second = action("81.2.69.142")
    run(geo, second)
    assert second["geo"] == LONDON
    assert geo.stats()["cache_hits"] == 1


def test_geo_replaces_a_geo_sent_by_the_producer(geo: GeoEnrichment) -> None:
    event = action("81.2.69.142", geo={"country": "Narnia"})
    run(geo, event)
    assert event["geo"] == LONDON


# --- hot reload -------------------------------------------------------------


def paris_networks(networks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fixture networks with 81.2.69.0/24 moved to Paris."""
    for entry in networks:
        if entry["network"] == "81.2.69.0/24":
            entry["record"] = {
                "city": {"geoname_id": 2988507, "names": {"en": "Paris"}},
                "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
                "country": {"geoname_id": 3017382, "iso_code": "FR", "names": {"en": "France"}},
                "location": {
                    "accuracy_radius": 5,
                    "latitude": 48.8534,
                    "longitude": 2.3488,
                    "time_zone": "Europe/Paris",
                },
                "subdivisions": [
                    {"geoname_id": 3012874, "iso_code": "IDF", "names": {"en": "Île-de-France"}}
                ],
            }
    return networks


PARIS = {
    "country": "France",
    "country_iso_code": "FR",
    "country_subdivision": "Île-de-France",
    "city": "Paris",
    "continent": "Europe",
    "continent_code": "EU",
    "location": {"latitude": 48.8534, "longitude": 2.3488, "accuracy_radius": 5},
    "timezone": "Europe/Paris",
}


def geo_of(geo: GeoEnrichment, ip: str) -> dict[str, Any] | None:
    event = action(ip)
    run(geo, event)
    return event.get("geo")


def test_reload_when_file_is_replaced(tmp_path: Path, build_mmdb, geo_networks) -> None:
    path = build_mmdb(tmp_path / "city.mmdb")
    geo = GeoEnrichment(path, check_interval=0)
    assert geo_of(geo, "81.2.69.142") == LONDON
    assert geo.reload_if_changed() is False  # unchanged file

    os.replace(build_mmdb(tmp_path / "new.mmdb", paris_networks(geo_networks)), path)
    assert geo.reload_if_changed() is True
    assert geo_of(geo, "81.2.69.142") == PARIS  # the cache was cleared
    assert geo_of(geo, "2001:480::1") == SAN_DIEGO
    assert geo.stats()["reloads"] == 1
    assert geo.reload_if_changed() is False


def test_reload_checks_at_most_once_per_interval(tmp_path: Path, build_mmdb, geo_networks) -> None:
    now = [1000.0]
    path = build_mmdb(tmp_path / "city.mmdb")
    geo = GeoEnrichment(path, check_interval=10, clock=lambda: now[0])
    assert geo_of(geo, "81.2.69.142") == LONDON
    os.replace(build_mmdb(tmp_path / "new.mmdb", paris_networks(geo_networks)), path)
    now[0] += 9
    assert geo_of(geo, "81.2.69.142") == LONDON  # not checked yet
    now[0] += 2
    assert geo_of(geo, "81.2.69.142") == PARIS
    assert geo.stats()["reloads"] == 1


def test_interval_zero_never_checks_by_itself(tmp_path: Path, build_mmdb, geo_networks) -> None:
    now = [0.0]
    path = build_mmdb(tmp_path / "city.mmdb")
    geo = GeoEnrichment(path, check_interval=0, clock=lambda: now[0])
    os.replace(build_mmdb(tmp_path / "new.mmdb", paris_networks(geo_networks)), path)
    now[0] += 1e9
    assert geo_of(geo, "81.2.69.142") == LONDON
    assert geo.reload_if_changed() is True


def test_rewrite_in_place_is_detected(tmp_path: Path, build_mmdb, geo_networks) -> None:
    path = build_mmdb(tmp_path / "city.mmdb")
    geo = GeoEnrichment(path, check_interval=0)
    new = build_mmdb(tmp_path / "new.mmdb", paris_networks(geo_networks))
    # Same inode, new size and mtime. (In production, rename over the file:
    # rewriting a memory-mapped file in place is unsafe for lookups in flight.)
    path.write_bytes(new.read_bytes())
    assert geo.reload_if_changed() is True
    assert geo_of(geo, "81.2.69.142") == PARIS


def test_broken_replacement_keeps_the_loaded_database(
    tmp_path: Path, build_mmdb, geo_networks, caplog: pytest.LogCaptureFixture
) -> None:
    path = build_mmdb(tmp_path / "city.mmdb")
    geo = GeoEnrichment(path, check_interval=0)
    assert geo_of(geo, "81.2.69.142") == LONDON

    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"this is not a MaxMind DB" * 100)
    os.replace(broken, path)
    with caplog.at_level(logging.WARNING, logger="pipeline.enrich.geo"):
        assert geo.reload_if_changed() is False
    assert "unusable" in caplog.text
    assert geo_of(geo, "81.2.69.142") == LONDON
    assert geo.reload_if_changed() is False  # the same broken file is not retried
    assert geo.stats()["reload_failures"] == 1

    path.unlink()  # missing while being replaced
    assert geo.reload_if_changed() is False
    assert geo_of(geo, "2001:480::1") == SAN_DIEGO

    os.replace(build_mmdb(tmp_path / "new.mmdb", paris_networks(geo_networks)), path)
    assert geo.reload_if_changed() is True
    assert geo_of(geo, "81.2.69.142") == PARIS


def test_replacement_with_another_database_type_is_refused(tmp_path: Path, build_mmdb) -> None:
    path = build_mmdb(tmp_path / "city.mmdb")
    geo = GeoEnrichment(path, check_interval=0)
    os.replace(build_mmdb(tmp_path / "asn.mmdb", database_type="GeoLite2-ASN"), path)
    assert geo.reload_if_changed() is False
    assert geo.database_info()["database_type"] == "GeoIP2-City"


# --- configuration ------------------------------------------------------------


def test_missing_database_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "GeoIP2-City.mmdb"
    with pytest.raises(ConfigError) as info:
        GeoEnrichment(missing)
    assert "RUM_GEOIP_DATABASE" in str(info.value)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"garbage" * 1000])
def test_unreadable_database_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mmdb"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="RUM_GEOIP_DATABASE") as info:
        GeoEnrichment(path)
    assert str(path) in str(info.value)


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RUM_GEOIP_DATABASE"):
        GeoEnrichment(tmp_path)


def test_non_city_database_is_a_config_error(tmp_path: Path, build_mmdb) -> None:
    path = build_mmdb(tmp_path / "asn.mmdb", database_type="GeoLite2-ASN")
    with pytest.raises(ConfigError, match=r"RUM_GEOIP_DATABASE.*City"):
        GeoEnrichment(path)


def test_from_settings(geoip_db: Path) -> None:
    settings = load_settings(
        {"RUM_GEOIP_DATABASE": str(geoip_db), "RUM_IP_CACHE_SIZE": "2", "RUM_GEOIP_CHECK_INTERVAL": "0"}
    )
    enrichment: Enrichment = GeoEnrichment.from_settings(settings)
    assert isinstance(enrichment, GeoEnrichment)
    geo = enrichment
    assert geo.name == "geo"
    assert geo.path == geoip_db
    for i in range(5):
        run(geo, action(f"81.2.69.{i}"))
    assert geo.stats()["cache_size"] == 2


def test_database_info(geo: GeoEnrichment, geoip_db: Path) -> None:
    info = geo.database_info()
    assert info["path"] == str(geoip_db)
    assert info["database_type"] == "GeoIP2-City"
    assert info["ip_version"] == 6
    assert isinstance(info["build_epoch"], int)
    assert 0 <= info["age_seconds"] < 24 * 3600


def test_default_database_is_the_packaged_geolite2() -> None:
    path = default_database_path()
    assert path.name == "GeoLite2-City.mmdb"
    geo = GeoEnrichment(None, cache_size=10, check_interval=0)
    assert geo.path == path
    assert geo.database_info()["database_type"] == "GeoLite2-City"
    located = geo_of(geo, "81.2.69.142")
    assert located is not None
    assert located["country_iso_code"] == "GB"
    geo.close()


@settings(max_examples=300, deadline=None)
@given(
    ip=st.one_of(
        st.text(),
        st.integers(),
        st.floats(),
        st.none(),
        st.booleans(),
        st.ip_addresses().map(str),
        st.from_regex(r"\A[0-9a-fA-F:.%]{0,45}\Z"),
    )
)
def test_enrich_never_raises(geoip_db: Path, ip: Any) -> None:
    geo = _shared_geo(geoip_db)
    event = action(ip)
    warnings = run(geo, event)
    assert len(warnings) <= 1
    assert all(w["enrichment"] == "geo" and w["path"] == "network.client.ip" for w in warnings)
    assert "geo" not in event or (warnings == [] and event["geo"])


_GEO_BY_PATH: dict[Path, GeoEnrichment] = {}


def _shared_geo(path: Path) -> GeoEnrichment:
    # One instance for every example, so the cache is exercised too.
    if path not in _GEO_BY_PATH:
        _GEO_BY_PATH[path] = GeoEnrichment(path, cache_size=64, check_interval=0)
    return _GEO_BY_PATH[path]


def test_huge_ip_strings_are_malformed_and_never_cached(geo: GeoEnrichment) -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):  # 20 distinct values of about 1 MB each
            warnings = run(geo, action(f"fe80::{i}%" + "z" * 1_000_000))
            assert [w["message"] for w in warnings] == [
                f"not a valid IPv4 or IPv6 address (string of {1_000_007 + len(str(i))} characters)"
            ]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert geo.stats()["cache_size"] == 0
    assert held < 100_000


def test_cache_is_bounded_in_bytes(geoip_db: Path) -> None:
    geo = GeoEnrichment(geoip_db, cache_size=10_000, cache_bytes=6_000, check_interval=0)
    for i in range(256):
        run(geo, action(f"81.2.69.{i}"))
        assert geo.stats()["cache_bytes"] <= 6_000
    assert 0 < geo.stats()["cache_size"] < 256
    assert geo_of(geo, "81.2.69.255") == geo_of(GeoEnrichment(geoip_db, check_interval=0), "81.2.69.255")
