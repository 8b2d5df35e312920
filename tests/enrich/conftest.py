"""Fixtures for the enrichment tests: a tiny GeoIP2 City database built at test time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.mmdb_fixture import build_test_mmdb, load_networks


@pytest.fixture(scope="session")
def geoip_db(test_mmdb: Path) -> Path:
    """The shared test GeoIP2-City database (tests/conftest.py); do not modify it."""
    return test_mmdb


@pytest.fixture
def build_mmdb() -> Callable[..., Path]:
    """``build_test_mmdb(path, networks=None, database_type="GeoIP2-City")``, for custom databases."""
    return build_test_mmdb


@pytest.fixture
def geo_networks() -> list[dict]:
    """A fresh copy of the fixture's networks, to modify for a custom database."""
    return load_networks()
