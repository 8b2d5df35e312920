"""Build a tiny GeoIP2-City ``.mmdb`` from ``tests/fixtures/geoip.json``.

Tests never use a real GeoLite2 file: this builder writes a valid MaxMind DB
with the same record shape, so the real ``geoip2`` reader is exercised.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mmdb_writer import MmdbF64, MmdbU16, MmdbU32, MMDBWriter
from netaddr import IPSet

FIXTURE = Path(__file__).parent / "fixtures" / "geoip.json"

#: The geo object the enrichment gives for the fixture database's London addresses (81.2.69.142 …).
LONDON = {
    "country": "United Kingdom",
    "country_iso_code": "GB",
    "country_subdivision": "England",
    "city": "London",
    "continent": "Europe",
    "continent_code": "EU",
    "location": {"latitude": 51.5142, "longitude": -0.0931, "accuracy_radius": 10},
    "timezone": "Europe/London",
}

# The MaxMind DB format is typed but JSON is not: these keys get the types
# MaxMind's own databases use (mmdb-writer would otherwise pick uint16 for any
# small int and could store a latitude like 51 as an integer).
_U16_KEYS = frozenset({"accuracy_radius", "metro_code", "confidence"})
_F64_KEYS = frozenset({"latitude", "longitude"})
_U32_KEYS = frozenset({"geoname_id"})


def load_networks(fixture: Path = FIXTURE) -> list[dict[str, Any]]:
    """The ``networks`` list of the JSON fixture (a fresh copy, safe to modify)."""
    data = json.loads(fixture.read_text(encoding="utf-8"))
    return copy.deepcopy(data["networks"])


def _typed(value: Any, key: str | None = None) -> Any:
    """Wrap values in mmdb-writer's explicit type markers, recursively."""
    if isinstance(value, dict):
        return {k: _typed(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, (bool, str)):
        return value
    if key in _F64_KEYS:
        return MmdbF64(float(value))
    if key in _U16_KEYS:
        return MmdbU16(int(value))
    if key in _U32_KEYS or isinstance(value, int):
        return MmdbU32(int(value))
    if isinstance(value, float):
        return MmdbF64(value)
    raise TypeError(f"unsupported value in GeoIP fixture: {value!r}")


def build_test_mmdb(
    path: Path | str,
    networks: list[dict[str, Any]] | None = None,
    database_type: str = "GeoIP2-City",
) -> Path:
    """Write an IPv6 MaxMind DB (IPv4 reachable too) and return its path.

    ``networks`` is a list of ``{"network": "CIDR", "record": {...}}``; by default
    the ones of ``tests/fixtures/geoip.json``.
    """
    path = Path(path)
    if networks is None:
        networks = load_networks()
    # ip_version=6 with ipv4_compatible stores IPv4 networks under ::/96, where
    # MaxMind readers look IPv4 addresses up in an IPv6 database.
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description="rum-pipeline test GeoIP database",
    )
    for entry in networks:
        writer.insert_network(IPSet([entry["network"]]), _typed(entry["record"]))
    writer.to_db_file(str(path))
    return path
