"""Geo enrichment: country, subdivision, city, continent, location from the client IP.

Reads a GeoIP2/GeoLite2 City database with ``geoip2``. Adds a top-level
``geo`` object::

    {"country": "United Kingdom", "country_iso_code": "GB",
     "country_subdivision": "England", "city": "London",
     "continent": "Europe", "continent_code": "EU",
     "location": {"latitude": 51.5142, "longitude": -0.0931, "accuracy_radius": 10},
     "timezone": "Europe/London"}

Keys whose value the database does not know are omitted; names are English.
Private, reserved, loopback, link-local, multicast and unspecified addresses,
and public addresses the database does not cover, give no ``geo`` and no
warning: that is normal traffic, not bad data. A client IP that is not an IP
address (``"999.1.1.1"``, ``"abc"``, a number) gives no ``geo`` and one warning.
A missing, ``null`` or empty-string IP counts as absent: nothing happens.

The database file is re-opened when it is replaced (for example by
``geoipupdate``), at most once per ``geoip_check_interval`` seconds, without a
restart. Replace it by renaming a complete file over it, as ``geoipupdate``
does: the loaded file is memory-mapped, and truncating or rewriting it in
place can crash the process (SIGBUS) before the change is noticed.
Not thread-safe: one instance per worker thread.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import geoip2.database
import geoip2.errors
import geoip2.models
import maxminddb

from pipeline.enrich.base import Warning
from pipeline.enrich.cache import BoundedCache, strings_cost
from pipeline.enrich.ip import MAX_IP_CHARS
from pipeline.errors import ConfigError, MissingDependencyError
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: The database is read through the C extension's memory map when it is
#: installed (MODE_AUTO picks it), which is several times faster per uncached
#: lookup than the pure-Python memory map (MODE_MMAP); without the extension,
#: MODE_AUTO falls back to MODE_MMAP itself.
READER_MODE = geoip2.database.MODE_AUTO

_DEFAULT_PACKAGE = "_maxminddb_geolite2"  # module shipped by the maxminddb-geolite2 distribution
_DEFAULT_FILE = "GeoLite2-City.mmdb"
_SETTING = "RUM_GEOIP_DATABASE"
_WARNING_PATH = "network.client.ip"


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
_Signature = tuple[int, int, int, int]


class _NoGeo:
    """Why an address has no geo; a cached result like a geo dict."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_NOT_PUBLIC = _NoGeo("not_public")
_NOT_FOUND = _NoGeo("not_found")
_MALFORMED = _NoGeo("malformed")

_Result = dict[str, Any] | _NoGeo
#: Bytes charged for a cached geo object beyond its strings (the dicts and floats).
_GEO_COST = 900


def default_database_path() -> Path:
    """The GeoLite2 City file shipped by the ``maxminddb-geolite2`` package (2018 data)."""
    try:
        folder = resources.files(_DEFAULT_PACKAGE)
    except ModuleNotFoundError:
        raise MissingDependencyError(
            "maxminddb-geolite2", f"the default GeoIP database (used while {_SETTING} is unset)"
        ) from None
    return Path(str(folder / _DEFAULT_FILE))


def _signature(path: Path) -> _Signature:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _open(path: Path) -> tuple[geoip2.database.Reader, Callable[[Any], geoip2.models.City]]:
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


def _geo_from_model(model: geoip2.models.City) -> dict[str, Any]:
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


class GeoEnrichment:
    """Adds ``geo`` from ``network.client.ip`` using a GeoIP2/GeoLite2 City database."""

    name: ClassVar[str] = "geo"

    def __init__(
        self,
        database: Path | str | None = None,
        *,
        cache_size: int = 50000,
        cache_bytes: int = 32 * 1024 * 1024,
        check_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open the database now; raise ConfigError if it cannot be read.

        ``database`` None means the maxminddb-geolite2 package's file.
        ``cache_size`` is the number of IP strings remembered and
        ``cache_bytes`` the bytes their results may hold (either 0 disables
        the cache); ``check_interval`` the seconds between checks for a replaced
        file (0 disables automatic checks; :meth:`reload_if_changed` still works).
        """
        self._path = Path(database) if database is not None else default_database_path()
        try:
            self._signature = _signature(self._path)
            self._reader, self._lookup = _open(self._path)
        except OSError as exc:
            raise ConfigError(
                f"{_SETTING}: cannot open GeoIP database {self._path}: {exc.strerror or exc}"
            ) from exc
        except Exception as exc:  # any decoding failure means the file is not a usable database
            raise ConfigError(
                f"{_SETTING}: {self._path} is not a readable GeoIP2 City database: {exc}"
            ) from exc
        self._rejected: _Signature | None = None  # a replacement that failed to open
        self._missing_logged = False
        self._lookup_error_logged = False
        self._check_interval = check_interval
        self._clock = clock
        self._next_check = clock() + check_interval
        # Bounded in bytes, not only entries: a geo object costs ~1-2 KB, so an
        # entry count alone would let memory follow the database's names.
        self._cache: BoundedCache[str, _Result] = BoundedCache(cache_size, cache_bytes)
        self._counts = dict.fromkeys(
            (
                "lookups",
                "malformed_ip",
                "not_public",
                "not_found",
                "lookup_errors",
                "reloads",
                "reload_failures",
            ),
            0,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> GeoEnrichment:
        """Build from ``geoip_database``, ``ip_cache_*`` and ``geoip_check_interval``."""
        return cls(
            settings.geoip_database,
            cache_size=settings.ip_cache_size,
            cache_bytes=settings.ip_cache_bytes,
            check_interval=settings.geoip_check_interval,
        )

    @property
    def path(self) -> Path:
        """The database file in use."""
        return self._path

    def _resolve(self, ip: str) -> _Result:
        """The result for ``ip`` through the cache; no address is longer than MAX_IP_CHARS."""
        if len(ip) > MAX_IP_CHARS:
            return _MALFORMED  # neither parsed nor cached: huge strings cannot fill memory
        found = self._cache.get(ip)
        if found is None:
            found = self._resolve_uncached(ip)
            strings = [ip, *(v for v in found.values() if type(v) is str)] if type(found) is dict else [ip]
            self._cache.put(ip, found, strings_cost(strings) + (_GEO_COST if type(found) is dict else 0))
        return found

    def _resolve_uncached(self, ip: str) -> _Result:
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip)
        except ValueError:
            return _MALFORMED
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
            return _NOT_PUBLIC
        try:
            model = self._lookup(key)
        except geoip2.errors.AddressNotFoundError:
            return _NOT_FOUND
        return _geo_from_model(model) or _NOT_FOUND

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        """Set ``event["geo"]`` from ``event["network"]["client"]["ip"]`` when it locates the client."""
        if self._check_interval:
            now = self._clock()
            if now >= self._next_check:
                self._next_check = now + self._check_interval
                self.reload_if_changed()
        network = event.get("network")
        if not isinstance(network, dict):
            return
        client = network.get("client")
        if not isinstance(client, dict):
            return
        ip = client.get("ip")
        if ip is None or ip == "":
            return
        counts = self._counts
        counts["lookups"] += 1
        if not isinstance(ip, str):
            counts["malformed_ip"] += 1
            warnings.append(self._warning(f"expected an IP address string, got {type(ip).__name__}"))
            return
        try:
            result = self._resolve(ip)
        except maxminddb.InvalidDatabaseError as exc:
            # A corrupt record must not stop the stream; the event goes on without geo.
            counts["lookup_errors"] += 1
            if not self._lookup_error_logged:  # once per loaded file, not once per event
                self._lookup_error_logged = True
                # The reader's message names the address looked up ("Error
                # looking up 81.2.69.142. ..."): never log a client's IP.
                log.warning(
                    "GeoIP lookup failed in %s (further failures are only counted): %s",
                    self._path,
                    without_addresses(str(exc)),
                )
            return
        if type(result) is dict:
            # A copy, so that a later change to this event cannot corrupt the
            # cached entry shared with other events (costs ~0.2 µs).
            geo = result.copy()
            if "location" in geo:
                geo["location"] = geo["location"].copy()
            event["geo"] = geo
        elif result is _MALFORMED:
            counts["malformed_ip"] += 1
            # The value itself is not echoed: it may be a personal address the
            # IP policy is about to truncate or drop.
            warnings.append(
                self._warning(f"not a valid IPv4 or IPv6 address (string of {len(ip)} characters)")
            )
        else:
            assert isinstance(result, _NoGeo)
            counts[result.reason] += 1

    @staticmethod
    def _warning(message: str) -> Warning:
        return {"enrichment": GeoEnrichment.name, "path": _WARNING_PATH, "message": message}

    def reload_if_changed(self) -> bool:
        """Re-open the database if its file was replaced; True if a new one is now in use.

        A replacement that cannot be opened is logged and skipped: the previous
        database stays in use and the file is tried again once it changes again.
        """
        try:
            sig = _signature(self._path)
        except OSError as exc:
            # Between an unlink and a rename the file may briefly be missing:
            # log once, keep serving from the loaded database.
            if not self._missing_logged:
                log.warning("GeoIP database %s is unreadable (%s); keeping the loaded one", self._path, exc)
                self._missing_logged = True
            return False
        self._missing_logged = False
        if sig == self._signature or sig == self._rejected:
            return False
        try:
            reader, lookup = _open(self._path)
        except Exception as exc:  # whatever is wrong with the new file, the old reader keeps working
            self._rejected = sig
            self._counts["reload_failures"] += 1
            log.warning(
                "GeoIP database %s was replaced by an unusable file (%s); keeping the loaded one",
                self._path,
                exc,
            )
            return False
        old = self._reader
        self._reader, self._lookup = reader, lookup
        self._signature, self._rejected = sig, None
        self._lookup_error_logged = False
        self._cache.clear()
        old.close()
        self._counts["reloads"] += 1
        log.info("GeoIP database %s reloaded (%s)", self._path, reader.metadata().database_type)
        return True

    def database_info(self) -> dict[str, Any]:
        """Path, type, build time and age of the database in use, for metrics."""
        meta = self._reader.metadata()
        return {
            "path": str(self._path),
            "database_type": meta.database_type,
            "build_epoch": meta.build_epoch,
            "age_seconds": max(0.0, time.time() - meta.build_epoch),
            "ip_version": meta.ip_version,
        }

    def stats(self) -> dict[str, float]:
        """Counters since start.

        ``lookups`` counts events carrying a client IP; ``cache_hits`` and
        ``cache_misses`` split the IP strings resolved (misses parse the address
        and query the database unless it is not public); ``no_geo`` is
        ``not_public`` (private, reserved...) plus ``not_found`` (not in the
        database); ``malformed_ip`` counts warnings.
        """
        cache = self._cache
        counts = self._counts
        return {
            **counts,
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "cache_size": len(cache),
            "cache_bytes": cache.bytes,
            "no_geo": counts["not_public"] + counts["not_found"],
        }

    def close(self) -> None:
        """Release the database file."""
        self._reader.close()
