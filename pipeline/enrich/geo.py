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
``geoipupdate``), without a restart: a worker checks every
``geoip_check_interval`` seconds in the background (:meth:`GeoEnrichment.start`);
an instance never started checks at most that often as it enriches.
Replace it by renaming a complete file over it, as ``geoipupdate`` does: the
loaded file is memory-mapped, and truncating or rewriting it in place can
crash the process (SIGBUS) before the change is noticed.
Not thread-safe: one instance per worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import maxminddb
from pydantic import BaseModel, Field

from pipeline.enrich.base import MetricSpec, Plugin, Warning, cache_metrics, object_schema, string_schema
from pipeline.enrich.cache import BoundedCache, strings_cost
from pipeline.enrich.geoip_db import (
    MALFORMED,
    SETTING,
    NoGeo,
    Result,
    Signature,
    default_database_path,
    open_database,
    resolve,
    signature,
    without_addresses,
)
from pipeline.enrich.ip import MAX_IP_CHARS
from pipeline.errors import ConfigError
from pipeline.settings_sources import Formerly

if TYPE_CHECKING:
    from pipeline.settings import Settings

log = logging.getLogger(__name__)

_WARNING_PATH = "network.client.ip"


#: Bytes charged for a cached geo object beyond its strings (the dicts and floats).
_GEO_COST = 900


class GeoSettings(BaseModel):
    """Settings of the geo enrichment (the IP policy shares its cache size)."""

    database: Annotated[Path | None, Formerly("geoip_database")] = Field(
        None,
        description="GeoIP2/GeoLite2 City .mmdb file. Default: the GeoLite2 City file of the "
        "maxminddb-geolite2 package (2018 data).",
    )
    check_interval: Annotated[float, Formerly("geoip_check_interval")] = Field(
        5.0, ge=0, description="Seconds between checks whether the GeoIP file was replaced (0 = never)."
    )
    cache_size: Annotated[int, Formerly("ip_cache_size")] = Field(
        50000, ge=0, description="IP addresses kept in the geo cache (LRU)."
    )
    cache_bytes: Annotated[int, Formerly("ip_cache_bytes")] = Field(
        32 * 1024 * 1024, ge=0, description="Bytes the geo cache may hold (LRU; 0 = no cache)."
    )


def _degrees(description: str, bound: int) -> dict[str, Any]:
    return {"description": description, "type": "number", "minimum": -bound, "maximum": bound}


#: The enriched action's ``$defs`` this enrichment writes.
SCHEMA: dict[str, Any] = {
    "geo": object_schema(
        "Location of the client IP (GeoIP2/GeoLite2 City). Absent for private, reserved or unknown "
        "addresses; every field is optional.",
        {
            "country": string_schema("Country name in English."),
            "country_iso_code": string_schema("ISO 3166-1 alpha-2 country code."),
            "country_subdivision": string_schema("First-level subdivision (state, region) name."),
            "city": string_schema("City name in English."),
            "continent": string_schema("Continent name in English."),
            "continent_code": string_schema("Two-letter continent code, e.g. EU."),
            "location": object_schema(
                "Approximate coordinates of the IP address.",
                {
                    "latitude": _degrees("Latitude in degrees.", 90),
                    "longitude": _degrees("Longitude in degrees.", 180),
                    "accuracy_radius": {
                        "description": "Radius in kilometres around the coordinates within which the "
                        "address is likely to be.",
                        "type": "integer",
                        "minimum": 0,
                    },
                },
                additionalProperties=False,
            ),
            "timezone": string_schema("IANA time zone, e.g. Europe/London."),
        },
    )
}

METRICS = (
    *cache_metrics("ip"),
    MetricSpec(
        "database_build_epoch",
        "rum_geoip_database_build_timestamp_seconds",
        "Build time of the loaded GeoIP database (epoch seconds).",
        "gauge",
    ),
    MetricSpec(
        "database_age_seconds",
        "rum_geoip_database_age_seconds",
        "Age of the loaded GeoIP database: now minus its build time.",
        "gauge",
    ),
    MetricSpec("reloads", "rum_geoip_reloads", "Replaced GeoIP database files loaded."),
    MetricSpec(
        "reload_failures",
        "rum_geoip_reload_failures",
        "Replaced GeoIP database files that could not be opened (the loaded one stays).",
    ),
)


class GeoEnrichment(Plugin):
    """Adds ``geo`` from ``network.client.ip`` using a GeoIP2/GeoLite2 City database."""

    name: ClassVar[str] = "geo"
    settings_model: ClassVar[type[BaseModel]] = GeoSettings
    schema: ClassVar[Mapping[str, Any]] = SCHEMA
    metrics: ClassVar[tuple[MetricSpec, ...]] = METRICS

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
            self._signature = signature(self._path)
            self._reader, self._lookup = open_database(self._path)
        except OSError as exc:
            raise ConfigError(
                f"{SETTING}: cannot open GeoIP database {self._path}: {exc.strerror or exc}"
            ) from exc
        except Exception as exc:  # any decoding failure means the file is not a usable database
            raise ConfigError(
                f"{SETTING}: {self._path} is not a readable GeoIP2 City database: {exc}"
            ) from exc
        self._rejected: Signature | None = None  # a replacement that failed to open
        self._missing_logged = False
        self._lookup_error_logged = False
        self._check_interval = check_interval  # per-event checks; off while the poller runs
        self._poll_interval = check_interval
        self._poller: asyncio.Task[None] | None = None
        self._clock = clock
        self._next_check = clock() + check_interval
        # Bounded in bytes, not only entries: a geo object costs ~1-2 KB, so an
        # entry count alone would let memory follow the database's names.
        self._cache: BoundedCache[str, Result] = BoundedCache(cache_size, cache_bytes)
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
        """Build from ``enrich.geo``: ``database``, ``cache_size``, ``cache_bytes``, ``check_interval``."""
        config = settings.section(GeoSettings)
        return cls(
            config.database,
            cache_size=config.cache_size,
            cache_bytes=config.cache_bytes,
            check_interval=config.check_interval,
        )

    @property
    def path(self) -> Path:
        """The database file in use."""
        return self._path

    def _resolve(self, ip: str) -> Result:
        """The result for ``ip`` through the cache; no address is longer than MAX_IP_CHARS."""
        if len(ip) > MAX_IP_CHARS:
            return MALFORMED  # neither parsed nor cached: huge strings cannot fill memory
        found = self._cache.get(ip)
        if found is None:
            found = resolve(self._lookup, ip)
            strings = [ip, *(v for v in found.values() if type(v) is str)] if type(found) is dict else [ip]
            self._cache.put(ip, found, strings_cost(strings) + (_GEO_COST if type(found) is dict else 0))
        return found

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
        elif result is MALFORMED:
            counts["malformed_ip"] += 1
            # The value itself is not echoed: it may be a personal address the
            # IP policy is about to truncate or drop.
            warnings.append(
                self._warning(f"not a valid IPv4 or IPv6 address (string of {len(ip)} characters)")
            )
        else:
            assert isinstance(result, NoGeo)
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
            sig = signature(self._path)
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
            reader, lookup = open_database(self._path)
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

    async def start(self) -> None:
        """Check for a replaced file every ``check_interval`` seconds in the background, not per event.

        On the loop that runs :meth:`enrich`, so a reload never falls in the middle of an action.
        """
        if self._poll_interval <= 0 or self._poller is not None:
            return
        self._check_interval = 0
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="geoip-reload")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            self.reload_if_changed()

    async def stop(self) -> None:
        """Stop the background checks; :meth:`enrich` checks by itself again."""
        poller, self._poller = self._poller, None
        if poller is None:
            return
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        self._check_interval = self._poll_interval
        self._next_check = self._clock() + self._poll_interval

    def stats(self) -> dict[str, float]:
        """Counters since start.

        ``lookups`` counts events carrying a client IP; ``cache_hits`` and
        ``cache_misses`` split the IP strings resolved (misses parse the address
        and query the database unless it is not public); ``no_geo`` is
        ``not_public`` (private, reserved...) plus ``not_found`` (not in the
        database); ``malformed_ip`` counts warnings; ``database_build_epoch``
        and ``database_age_seconds`` describe the file in use.
        """
        cache = self._cache
        counts = self._counts
        stats: dict[str, float] = {
            **counts,
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "cache_size": len(cache),
            "cache_bytes": cache.bytes,
            "no_geo": counts["not_public"] + counts["not_found"],
        }
        try:
            info = self.database_info()
        except Exception:  # a reload may close the reader while metrics read it from another thread
            return stats
        database = {"database_build_epoch": info["build_epoch"], "database_age_seconds": info["age_seconds"]}
        return {**stats, **database}

    def close(self) -> None:
        """Release the database file."""
        self._reader.close()
