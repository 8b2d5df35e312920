"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mmdb_fixture import build_test_mmdb


@pytest.fixture(scope="session")
def test_mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GeoIP2-City database built from tests/fixtures/geoip.json."""
    return build_test_mmdb(tmp_path_factory.mktemp("geoip") / "test-city.mmdb")
