"""Settings: validated once, every bad key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import IpPolicy, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.partitions == 12
    assert settings.ip_policy is IpPolicy.keep
    assert settings.topic("rum.actions.raw") == "rum.actions.raw"


def test_environment_values_are_parsed() -> None:
    settings = load_settings(
        {
            "RUM_PARTITIONS": "3",
            "RUM_IP_POLICY": "truncate",
            "RUM_TOPIC_PREFIX": "stg.",
            "RUM_KAFKA_BOOTSTRAP": "a:1, b:2",
        }
    )
    assert settings.partitions == 3
    assert settings.ip_policy is IpPolicy.truncate
    assert settings.topic("rum.actions.raw") == "stg.rum.actions.raw"
    assert settings.bootstrap_servers == ["a:1", "b:2"]


def test_every_bad_key_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_PARTITIONS": "zero", "RUM_IP_POLICY": "hide", "RUM_KAFKA_BOOTSTRAP": "nohost"})
    message = str(err.value)
    for key in ("RUM_PARTITIONS", "RUM_IP_POLICY", "RUM_KAFKA_BOOTSTRAP"):
        assert key in message


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="RUM_PARTITONS"):
        load_settings({"RUM_PARTITONS": "3"})


def test_out_of_range_value() -> None:
    with pytest.raises(ConfigError, match="RUM_PARTITIONS"):
        load_settings({"RUM_PARTITIONS": "0"})


def test_config_file_and_environment_precedence(tmp_path: Path) -> None:
    config = tmp_path / "rum.yaml"
    config.write_text("partitions: 6\ntopic_prefix: dev.\n")
    settings = load_settings({"RUM_CONFIG_FILE": str(config), "RUM_PARTITIONS": "8"})
    assert settings.partitions == 8  # the environment wins over the file
    assert settings.topic_prefix == "dev."


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "rum.yaml"
    config.write_text("partitions: many\nunknown_thing: 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_CONFIG_FILE": str(config)})
    assert "RUM_PARTITIONS" in str(err.value)
    assert "RUM_UNKNOWN_THING" in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RUM_CONFIG_FILE"):
        load_settings({"RUM_CONFIG_FILE": str(tmp_path / "absent.yaml")})


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        settings.partitions = 3  # type: ignore[misc]


def test_local_broker_port_moves_the_default_bootstrap() -> None:
    assert load_settings({"RUM_KAFKA_PORT": "9192"}).kafka_bootstrap == "127.0.0.1:9192"
    explicit = load_settings({"RUM_KAFKA_PORT": "9192", "RUM_KAFKA_BOOTSTRAP": "kafka:29092"})
    assert explicit.kafka_bootstrap == "kafka:29092"


def test_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUM_KAFKA_PORT", "19092")
    monkeypatch.setenv("RUM_PARTITIONS", "3")
    settings = load_settings({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.partitions == 12


def test_the_scripts_own_variables_are_not_unknown_settings() -> None:
    env = {"RUM_REQUIRE_BROWSER": "1", "RUM_BROKER_DIR": ".broker-chaos", "RUM_PARTITIONS": "3"}
    settings = load_settings(env)
    assert settings.partitions == 3
    with pytest.raises(ConfigError, match="RUM_REQUIRE_BROWSERS"):
        load_settings({"RUM_REQUIRE_BROWSERS": "1"})


def test_gc_thresholds_are_three_numbers_or_python() -> None:
    assert load_settings({}).gc_thresholds == (200_000, 10, 1000)
    assert load_settings({"RUM_GC_THRESHOLDS": "5000, 20, 100"}).gc_thresholds == (5000, 20, 100)
    assert load_settings({"RUM_GC_THRESHOLDS": "python"}).gc_thresholds is None
    for bad in ("5000,20", "0,10,10", "a,b,c", "-1,10,10", "99999999999999999999,1,1", "²,1,1"):
        with pytest.raises(ConfigError, match="RUM_GC_THRESHOLDS"):
            load_settings({"RUM_GC_THRESHOLDS": bad})
