"""The flat names of before the nesting, the sources and what errors show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field, SecretStr

from pipeline.enrich import registry
from pipeline.enrich.base import Plugin
from pipeline.errors import ConfigError
from pipeline.settings import CoreSettings, Settings, _compose, load_settings
from pipeline.settings_sources import env_name, flat_names, leaves

FIXTURE = Path(__file__).parent / "fixtures" / "settings" / "flat_names.json"
#: Every RUM_ variable of the flat model, taken from that model before the settings were nested.
FLAT: dict[str, dict[str, Any]] = json.loads(FIXTURE.read_text())["names"]


def _at(settings: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        settings = getattr(settings, part)
    return settings


@pytest.fixture
def pem_dir(tmp_path: Path) -> str:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    return str(tmp_path)


def test_the_model_declares_exactly_the_flat_names_of_before() -> None:
    declared = {f"RUM_{name.upper()}": ".".join(path) for name, path in flat_names(Settings).items()}
    assert declared == {name: spec["setting"] for name, spec in FLAT.items()}


@pytest.mark.parametrize("name", sorted(FLAT))
def test_each_flat_name_sets_its_nested_setting(name: str, pem_dir: str) -> None:
    spec = FLAT[name]
    value = spec["value"].format(tmp=pem_dir)
    needs = {k: v.format(tmp=pem_dir) for k, v in spec.get("needs", {}).items()}
    by_old = _at(load_settings({**needs, name: value}), spec["setting"])
    by_new = _at(
        load_settings({**needs, env_name(tuple(spec["setting"].split("."))): value}), spec["setting"]
    )
    assert by_old == by_new
    default = dict(leaves(Settings))[tuple(spec["setting"].split("."))].get_default(call_default_factory=True)
    assert by_old != default


def test_a_flat_name_also_works_as_a_top_level_config_key(tmp_path: Path, pem_dir: str) -> None:
    for name, spec in FLAT.items():
        if "needs" in spec:
            continue
        config = tmp_path / "rum.yaml"
        config.write_text(f"{name.removeprefix('RUM_').lower()}: {json.dumps(spec['value'])}\n")
        from_file = _at(load_settings({"RUM_CONFIG_FILE": str(config)}), spec["setting"])
        assert from_file == _at(load_settings({name: spec["value"]}), spec["setting"]), name


def test_a_secret_is_never_echoed(tmp_path: Path) -> None:
    # The password is refused (no SASL protocol), misspelt in the file, and part of a group-level error.
    config = tmp_path / "rum.yaml"
    config.write_text("kafka:\n  sasl_pasword: hunter2-file\n")
    env = {"RUM_SASL_PASSWORD": "hunter2-env", "RUM_CONFIG_FILE": str(config)}
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    message = str(err.value)
    assert "kafka.sasl_password (RUM_KAFKA__SASL_PASSWORD or RUM_SASL_PASSWORD)" in message
    assert "kafka.sasl_pasword" in message
    assert "hunter2" not in message
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_SECURITY_PROTOCOL": "SASL_SSL", "RUM_SASL_PASSWORD": "hunter2"})
    assert "RUM_SASL_USERNAME" in str(err.value) and "hunter2" not in str(err.value)
    settings = load_settings(
        {
            "RUM_SECURITY_PROTOCOL": "SASL_SSL",
            "RUM_SASL_PASSWORD": "hunter2",
            "RUM_SASL_USERNAME": "u",
            "RUM_SASL_MECHANISM": "PLAIN",
        }
    )
    assert isinstance(settings.kafka.sasl_password, SecretStr) and "hunter2" not in repr(settings)


def test_a_group_check_names_the_variables_it_compares() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_INTAKE__MAX_EVENT_BYTES": "2000", "RUM_INTAKE_MAX_PAYLOAD_BYTES": "1500"})
    message = str(err.value)
    assert "intake.max_event_bytes (RUM_INTAKE__MAX_EVENT_BYTES or RUM_INTAKE_MAX_EVENT_BYTES)" in message
    assert "RUM_INTAKE_MAX_PAYLOAD_BYTES" in message


class _DemoSettings(BaseModel):
    """Settings of a demonstration enrichment."""

    level: int = Field(3, ge=0, description="How much.")


class _Demo(Plugin):
    name: ClassVar[str] = "demo"
    settings_model: ClassVar[type[BaseModel]] = _DemoSettings


def test_a_plugin_settings_model_appears_under_enrich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "ENRICHMENTS", (*registry.ENRICHMENTS, _Demo))
    composed = _compose(CoreSettings)
    monkeypatch.setattr("pipeline.settings.Settings", composed)
    settings = load_settings({"RUM_ENRICH__DEMO__LEVEL": "7"})
    assert isinstance(settings, composed)
    assert settings.enrich.demo.level == 7
    assert settings.section(_DemoSettings).level == 7
    with pytest.raises(ConfigError, match="RUM_ENRICH__DEMO__LEVL"):
        load_settings({"RUM_ENRICH__DEMO__LEVL": "7"})
    with pytest.raises(ConfigError, match=r"enrich.demo.level \(RUM_ENRICH__DEMO__LEVEL\)"):
        load_settings({"RUM_ENRICH__DEMO__LEVEL": "-1"})


class _TagsSettings(BaseModel):
    """A plugin setting pydantic-settings decodes as JSON from the environment."""

    tags: list[str] = Field(default_factory=list, description="Tags.")


class _Tags(Plugin):
    name: ClassVar[str] = "tags"
    settings_model: ClassVar[type[BaseModel]] = _TagsSettings


def test_a_value_the_environment_cannot_decode_blames_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(registry, "ENRICHMENTS", (*registry.ENRICHMENTS, _Tags))
    monkeypatch.setattr("pipeline.settings.Settings", _compose(CoreSettings))
    assert load_settings({"RUM_ENRICH__TAGS__TAGS": '["a"]'}).enrich.tags.tags == ["a"]
    config = tmp_path / "rum.yaml"
    config.write_text("kafka:\n  partitions: 3\n")
    for env in ({}, {"RUM_CONFIG_FILE": str(config)}):
        with pytest.raises(ConfigError) as err:
            load_settings({**env, "RUM_ENRICH__TAGS__TAGS": "[bad"})
        assert 'field "enrich" from the environment' in str(err.value)
        assert "RUM_CONFIG_FILE" not in str(err.value)
