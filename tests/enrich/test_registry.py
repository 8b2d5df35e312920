"""The enrichment registry: settings, schema fragments, metrics and start/stop hooks come from plug-ins."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import BaseModel, Field

from pipeline import settings as settings_module
from pipeline.enrich import registry
from pipeline.enrich.base import MetricSpec, Plugin, Warning
from pipeline.enrich.geo import GeoEnrichment
from pipeline.metrics import _enrichment_metrics
from pipeline.process import Processor
from pipeline.schemas import ENRICHED_ACTION, load_schema
from pipeline.settings import CoreSettings, Settings, load_settings
from pipeline.settings_sources import Formerly


class _ViewA(Plugin):
    name: ClassVar[str] = "a"
    schema: ClassVar[dict[str, Any]] = {
        "view": {"description": "View.", "type": "object", "properties": {"a": {"type": "string"}}}
    }


class _ViewB(Plugin):
    name: ClassVar[str] = "b"
    schema: ClassVar[dict[str, Any]] = {"view": {"type": "object", "properties": {"b": {"type": "integer"}}}}


class _Clash(BaseModel):
    size: Annotated[int, Formerly("batch_size")] = Field(1, description="Claims a core setting's flat name.")


class _ClashingPlugin(Plugin):
    name: ClassVar[str] = "clash"
    settings_model: ClassVar[type[BaseModel]] = _Clash


def test_every_enrichment_setting_hangs_under_enrich_by_its_name() -> None:
    enrich = Settings.model_fields["enrich"].annotation
    assert isinstance(enrich, type) and issubclass(enrich, BaseModel)
    with_settings = [cls for cls in registry.ENRICHMENTS if cls.settings_model.model_fields]
    assert with_settings, "the registered enrichments declare settings"
    assert list(enrich.model_fields) == [cls.name for cls in with_settings]
    env = {}
    for cls in with_settings:
        assert issubclass(enrich.model_fields[cls.name].annotation, cls.settings_model)  # type: ignore[arg-type]
        for name, info in cls.settings_model.model_fields.items():
            assert info.description
            assert name not in CoreSettings.model_fields
            if info.annotation is int:
                env[f"RUM_ENRICH__{cls.name.upper()}__{name.upper()}"] = "7"
    settings = load_settings(env)
    for key in env:
        _, plugin, field = key.lower().split("__")
        assert getattr(settings.section(registry.REGISTRY[plugin].settings_model), field) == 7, key
    # and by the names the settings had before they were nested
    settings = load_settings({"RUM_UA_CACHE_SIZE": "7", "RUM_IP_POLICY": "drop", "RUM_IP_CACHE_BYTES": "9"})
    assert settings.enrich.browser.cache_size == 7
    assert settings.enrich.ip_policy.policy == "drop"
    assert settings.enrich.geo.cache_bytes == 9


def test_a_flat_name_two_settings_claim_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "ENRICHMENTS", (*registry.ENRICHMENTS, _ClashingPlugin))
    with pytest.raises(TypeError, match="batch_size"):
        settings_module._compose(CoreSettings)


def test_fragments_of_one_object_are_merged_property_by_property(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "ENRICHMENTS", (_ViewA, _ViewB))
    view = registry.schema_defs()["view"]
    assert view == {
        "description": "View.",
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
    }
    assert "b" not in _ViewA.schema["view"]["properties"]  # the declarations are not modified


@pytest.mark.parametrize(
    "second",
    [
        {"view": {"properties": {"a": {"type": "integer"}}}},  # a property described twice
        {"view": {"type": "array"}},  # another keyword with another value
    ],
)
def test_fragments_that_disagree_are_refused(monkeypatch: pytest.MonkeyPatch, second: dict[str, Any]) -> None:
    clash = type("_Second", (Plugin,), {"name": "second", "schema": second})
    monkeypatch.setattr(registry, "ENRICHMENTS", (_ViewA, clash))
    with pytest.raises(ValueError, match="view"):
        registry.schema_defs()


def test_the_enriched_schema_holds_every_registered_fragment() -> None:
    defs = load_schema(ENRICHED_ACTION)["$defs"]
    for cls in registry.ENRICHMENTS:
        for name, fragment in cls.schema.items():
            for prop, sub in fragment.get("properties", {}).items():
                assert defs[name]["properties"][prop] == sub, f"{cls.__name__}: $defs/{name}/{prop}"


class _Counting(Plugin):
    name: ClassVar[str] = "counting"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("hits", "rum_test_lookups", "Lookups.", labels={"result": "hit"}),
        MetricSpec("misses", "rum_test_lookups", "Lookups.", labels={"result": "miss"}),
        MetricSpec("size", "rum_test_size", "Entries.", "gauge"),
        MetricSpec("absent", "rum_test_absent", "Not in stats: no sample."),
    )

    def __init__(self, hits: int) -> None:
        self.hits = hits

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        self.hits += 1

    def stats(self) -> dict[str, float]:
        return {"hits": self.hits, "misses": 2, "size": 5}


def test_metrics_are_derived_from_what_each_enrichment_declares() -> None:
    families = {f.name: f for f in _enrichment_metrics([_Counting(3), _Counting(4), object()])}
    # prometheus_client drops a counter's _total suffix from the family name.
    lookups = [(s.labels, s.value) for s in families["rum_test_lookups"].samples]
    assert lookups == [
        ({"result": "hit"}, 3),
        ({"result": "miss"}, 2),
        ({"result": "hit"}, 4),
        ({"result": "miss"}, 2),
    ]
    assert families["rum_test_size"].type == "gauge"
    assert families["rum_test_absent"].samples == []


def test_registered_enrichments_declare_the_metrics_they_had() -> None:
    names = {spec.name for cls in registry.ENRICHMENTS for spec in cls.metrics}
    assert {
        "rum_enrich_cache_hits",
        "rum_enrich_cache_misses",
        "rum_enrich_cache_entries",
        "rum_geoip_database_build_timestamp_seconds",
        "rum_geoip_database_age_seconds",
        "rum_geoip_reloads",
        "rum_geoip_reload_failures",
    } <= names


class _Hooked(Plugin):
    name: ClassVar[str] = "hooked"

    def __init__(self, log: list[str], tag: str) -> None:
        self.log, self.tag = log, tag

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        """Nothing to add."""

    def stats(self) -> dict[str, float]:
        return {}

    async def start(self) -> None:
        self.log.append(f"start {self.tag}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.tag}")


def test_processor_starts_in_order_and_stops_in_reverse() -> None:
    log: list[str] = []
    processor = Processor(load_settings({}), [_Hooked(log, "a"), _Counting(0), _Hooked(log, "b")])

    async def run() -> None:
        await processor.start()
        await processor.stop()

    asyncio.run(run())
    assert log == ["start a", "start b", "stop b", "stop a"]


def test_geo_started_watches_its_file_in_the_background(tmp_path: Path, build_mmdb, geo_networks) -> None:
    path = build_mmdb(tmp_path / "city.mmdb")
    geo = GeoEnrichment(path, check_interval=0.05)

    async def run() -> int:
        await geo.start()
        for entry in geo_networks:
            if entry["network"] == "81.2.69.0/24":
                entry["record"] = {"country": {"iso_code": "FR", "names": {"en": "France"}}}
        os.replace(build_mmdb(tmp_path / "new.mmdb", geo_networks), path)
        deadline = time.monotonic() + 30
        while geo.stats()["reloads"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # no action is enriched: the watch alone reloads
        reloads = int(geo.stats()["reloads"])
        await geo.stop()
        return reloads

    assert asyncio.run(run()) == 1
    event = {"network": {"client": {"ip": "81.2.69.142"}}}
    geo.enrich(event, [])
    assert event["geo"] == {"country": "France", "country_iso_code": "FR"}
    geo.close()
