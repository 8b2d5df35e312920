"""Reading a GeoIP2/GeoLite2 City database: open, pick the lookup, turn a record into ``geo``."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import geoip2.database
import geoip2.errors
import geoip2.models

from pipeline.errors import MissingDependencyError

#: The database is read through the C extension's memory map when it is
#: installed (MODE_AUTO picks it), which is several times faster per uncached
#: lookup than the pure-Python memory map (MODE_MMAP); without the extension,
#: MODE_AUTO falls back to MODE_MMAP itself.
READER_MODE = geoip2.database.MODE_AUTO

_DEFAULT_PACKAGE = "_maxminddb_geolite2"  # module shipped by the maxminddb-geolite2 distribution
_DEFAULT_FILE = "GeoLite2-City.mmdb"
SETTING = "RUM_GEOIP_DATABASE"


def without_addresses(text: str) -> str:
    """``text`` with every word that is an IPv4 or IPv6 address replaced by ``<ip>``, for logs."""
    words = text.split(" ")
    for i, word in enumerate(words):
        bare = word.rstrip(".,;:)").lstrip("(")
        if bare and any(c.isdigit() for c in bare):
            try:
                ipaddress.ip_address(bare)
            except ValueError:
                continue
            words[i] = word.replace(bare, "<ip>")
    return " ".join(words)


#: os.stat fields that change when the file is replaced or rewritten.
Signature = tuple[int, int, int, int]


def default_database_path() -> Path:
    """The GeoLite2 City file shipped by the ``maxminddb-geolite2`` package (2018 data)."""
    try:
        folder = resources.files(_DEFAULT_PACKAGE)
    except ModuleNotFoundError:
        raise MissingDependencyError(
            "maxminddb-geolite2", f"the default GeoIP database (used while {SETTING} is unset)"
        ) from None
    return Path(str(folder / _DEFAULT_FILE))


def signature(path: Path) -> Signature:
    """The stat fields of ``path`` that change when it is replaced or rewritten."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def open_database(path: Path) -> tuple[geoip2.database.Reader, Callable[[Any], geoip2.models.City]]:
    """Open ``path`` and pick the lookup method its database type supports."""
    reader = geoip2.database.Reader(str(path), locales=["en"], mode=READER_MODE)
    db_type = reader.metadata().database_type
    # Enterprise databases carry the same city-level records under another name.
    if "City" in db_type:
        return reader, reader.city
    if "Enterprise" in db_type:
        return reader, reader.enterprise
    reader.close()
    raise ValueError(f"database type {db_type!r} is not a GeoIP2/GeoLite2 City database")


def geo_from_model(model: geoip2.models.City) -> dict[str, Any]:
    """The ``geo`` object for one database record; unknown values are left out."""
    geo: dict[str, Any] = {}
    country = model.country
    if name := country.names.get("en"):
        geo["country"] = name
    if country.iso_code:
        geo["country_iso_code"] = country.iso_code
    # The first subdivision is the largest one (England before Brent).
    if model.subdivisions and (name := model.subdivisions[0].names.get("en")):
        geo["country_subdivision"] = name
    if name := model.city.names.get("en"):
        geo["city"] = name
    continent = model.continent
    if name := continent.names.get("en"):
        geo["continent"] = name
    if continent.code:
        geo["continent_code"] = continent.code
    loc = model.location
    if loc.latitude is not None and loc.longitude is not None:
        location: dict[str, Any] = {"latitude": loc.latitude, "longitude": loc.longitude}
        if loc.accuracy_radius is not None:
            location["accuracy_radius"] = loc.accuracy_radius
        geo["location"] = location
    if loc.time_zone:
        geo["timezone"] = loc.time_zone
    return geo


class NoGeo:
    """Why an address has no geo; a cached result like a geo dict."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


NOT_PUBLIC = NoGeo("not_public")
NOT_FOUND = NoGeo("not_found")
MALFORMED = NoGeo("malformed")

#: A lookup's outcome: the ``geo`` object, or why there is none.
Result = dict[str, Any] | NoGeo


def resolve(lookup: Callable[[str], geoip2.models.City], ip: str) -> Result:
    """The geo of ``ip``, or why it has none, read through ``lookup``."""
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip)
    except ValueError:
        return MALFORMED
    key = ip  # the reader is faster given the string than the parsed address
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is an IPv4 client seen through a dual-stack socket.
            addr = addr.ipv4_mapped
            key = str(addr)
        elif addr.scope_id is not None:
            # The reader rejects "%zone" suffixes; the zone says nothing about location.
            addr = ipaddress.IPv6Address(int(addr))
            key = str(addr)
    # is_global is False for private, loopback, link-local, reserved,
    # unspecified, shared (100.64/10) and documentation ranges; multicast
    # counts as global for the ipaddress module but locates nobody.
    if not addr.is_global or addr.is_multicast:
        return NOT_PUBLIC
    try:
        model = lookup(key)
    except geoip2.errors.AddressNotFoundError:
        return NOT_FOUND
    return geo_from_model(model) or NOT_FOUND
