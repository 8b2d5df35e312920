"""The GeoIP database layer: opening by database type, resolving addresses, the geo object, logs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.enrich.geoip_db import (
    MALFORMED,
    NOT_FOUND,
    NOT_PUBLIC,
    geo_from_model,
    open_database,
    resolve,
    signature,
    without_addresses,
)
from tests.mmdb_fixture import LONDON, build_test_mmdb, load_networks


@pytest.fixture(scope="module")
def lookup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reader, city = open_database(build_test_mmdb(tmp_path_factory.mktemp("geo") / "city.mmdb"))
    yield city
    reader.close()


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("81.2.69.142", LONDON),
        ("::ffff:81.2.69.142", LONDON),  # an IPv4 client seen through a dual-stack socket
        ("10.0.0.1", NOT_PUBLIC),
        ("127.0.0.1", NOT_PUBLIC),
        ("100.64.0.1", NOT_PUBLIC),  # shared address space
        ("192.0.2.1", NOT_PUBLIC),  # documentation
        ("fe80::1%eth0", NOT_PUBLIC),  # a zone is dropped, the address is still link-local
        ("224.0.0.1", NOT_PUBLIC),  # multicast locates nobody
        ("8.8.8.8", NOT_FOUND),  # public but not in the test database
        ("81.2.69", MALFORMED),
        ("", MALFORMED),
    ],
)
def test_resolve(lookup: Any, ip: str, expected: Any) -> None:
    assert resolve(lookup, ip) == expected  # a NoGeo reason compares by identity


def test_a_zone_does_not_hide_a_public_ipv6_address(lookup: Any) -> None:
    assert resolve(lookup, "2001:480::1%eth0") == resolve(lookup, "2001:480::1")
    geo = resolve(lookup, "2001:480::1")
    assert isinstance(geo, dict) and geo["city"] == "San Diego"


def test_the_largest_subdivision_comes_first(lookup: Any) -> None:
    geo = resolve(lookup, "2.125.160.216")
    assert isinstance(geo, dict) and geo["country_subdivision"] == "England" and geo["city"] == "Boxford"


def test_an_empty_record_is_not_found(tmp_path: Path) -> None:
    path = build_test_mmdb(tmp_path / "empty.mmdb", [{"network": "81.2.69.0/24", "record": {}}])
    reader, city = open_database(path)
    try:
        assert geo_from_model(city("81.2.69.1")) == {}
        assert resolve(city, "81.2.69.1") is NOT_FOUND
    finally:
        reader.close()


def test_enterprise_databases_are_read_as_city_databases(tmp_path: Path) -> None:
    path = build_test_mmdb(tmp_path / "enterprise.mmdb", load_networks(), database_type="GeoIP2-Enterprise")
    reader, lookup = open_database(path)
    try:
        assert resolve(lookup, "81.2.69.142") == LONDON
    finally:
        reader.close()


def test_other_database_types_are_refused(tmp_path: Path) -> None:
    path = build_test_mmdb(tmp_path / "country.mmdb", load_networks(), database_type="GeoIP2-Country")
    with pytest.raises(
        ValueError, match="database type 'GeoIP2-Country' is not a GeoIP2/GeoLite2 City database"
    ):
        open_database(path)


def test_the_signature_changes_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = build_test_mmdb(tmp_path / "city.mmdb")
    before = signature(path)
    assert signature(path) == before
    replacement = build_test_mmdb(tmp_path / "new.mmdb", load_networks()[:1])
    os.replace(replacement, path)
    assert signature(path) != before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lookup of 81.2.69.142 failed", "lookup of <ip> failed"),
        ("(2001:db8::1), then 10.0.0.1.", "(<ip>), then <ip>."),
        ("version 1.5 took 3 s", "version 1.5 took 3 s"),
        ("::ffff:81.2.69.142;", "<ip>;"),
        ("no address here", "no address here"),
    ],
)
def test_addresses_are_hidden_from_log_text(text: str, expected: str) -> None:
    assert without_addresses(text) == expected
