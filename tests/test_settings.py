"""Settings: nested per component, validated once, every bad setting named."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import IpPolicy, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.kafka.partitions == 12
    assert settings.enrich.ip_policy.policy is IpPolicy.keep
    assert settings.topic("rum.actions.raw") == "rum.actions.raw"


def test_nested_environment_values_are_parsed() -> None:
    settings = load_settings(
        {
            "RUM_KAFKA__PARTITIONS": "3",
            "RUM_ENRICH__IP_POLICY__POLICY": "truncate",
            "RUM_KAFKA__TOPIC_PREFIX": "stg.",
            "RUM_KAFKA__BOOTSTRAP": "a:1, b:2",
            "RUM_WORKER__GC_THRESHOLDS": "5000,20,100",
            "RUM_INTAKE__CLIENT_TOKENS": "tok=shop",
        }
    )
    assert settings.kafka.partitions == 3
    assert settings.enrich.ip_policy.policy is IpPolicy.truncate
    assert settings.topic("rum.actions.raw") == "stg.rum.actions.raw"
    assert settings.bootstrap_servers == ["a:1", "b:2"]
    assert settings.worker.gc_thresholds == (5000, 20, 100)
    assert settings.intake.client_tokens == {"tok": "shop"}


def test_flat_environment_values_are_parsed() -> None:
    settings = load_settings({"RUM_PARTITIONS": "3", "RUM_IP_POLICY": "truncate", "RUM_ROLLUPS": "false"})
    assert settings.kafka.partitions == 3
    assert settings.enrich.ip_policy.policy is IpPolicy.truncate
    assert settings.rollups.enabled is False


def test_every_bad_key_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                "RUM_PARTITIONS": "zero",
                "RUM_ENRICH__IP_POLICY__POLICY": "hide",
                "RUM_KAFKA_BOOTSTRAP": "nohost",
            }
        )
    message = str(err.value)
    for name in ("kafka.partitions", "RUM_PARTITIONS", "RUM_KAFKA__PARTITIONS", "enrich.ip_policy.policy"):
        assert name in message
    assert "RUM_IP_POLICY" in message and "RUM_KAFKA_BOOTSTRAP" in message and "'nohost'" in message


def test_unknown_names_are_refused_with_their_list() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_PARTITONS": "3", "RUM_KAFKA__PARTITONS": "3", "RUM_PARTITIONS": "3"})
    assert "RUM_KAFKA__PARTITONS, RUM_PARTITONS" in str(err.value)
    assert "RUM_PARTITIONS," not in str(err.value)


def test_a_setting_given_by_both_its_names_is_refused() -> None:
    with pytest.raises(ConfigError, match="RUM_KAFKA__PARTITIONS and RUM_PARTITIONS"):
        load_settings({"RUM_PARTITIONS": "3", "RUM_KAFKA__PARTITIONS": "4"})


def test_out_of_range_value() -> None:
    with pytest.raises(ConfigError, match="RUM_PARTITIONS"):
        load_settings({"RUM_KAFKA__PARTITIONS": "0"})


def test_precedence_explicit_then_environment_then_file_then_default(tmp_path: Path) -> None:
    config = tmp_path / "rum.yaml"
    config.write_text("kafka:\n  partitions: 6\n  topic_prefix: dev.\n  app_id: from-file\nbatch_size: 50\n")
    env = {"RUM_CONFIG_FILE": str(config), "RUM_KAFKA__PARTITIONS": "8", "RUM_APP_ID": "from-env"}
    settings = load_settings(env)
    assert settings.kafka.partitions == 8  # the environment wins over the file
    assert settings.kafka.app_id == "from-env"  # by its flat name too
    assert settings.kafka.topic_prefix == "dev."  # the file wins over the default
    assert settings.worker.batch_size == 50  # a flat key in the file
    assert settings.kafka.replication_factor == 1  # the default
    explicit = load_settings(env, **{"kafka.partitions": 9}, kafka={"topic_prefix": "cli."}, app_id="cli")
    assert (explicit.kafka.partitions, explicit.kafka.topic_prefix, explicit.kafka.app_id) == (
        9,
        "cli.",
        "cli",
    )


def test_json_config_file(tmp_path: Path) -> None:
    config = tmp_path / "rum.json"
    config.write_text('{"enrich": {"geo": {"cache_size": 5}}, "ua_cache_size": 6}')
    settings = load_settings({"RUM_CONFIG_FILE": str(config)})
    assert settings.enrich.geo.cache_size == 5
    assert settings.enrich.browser.cache_size == 6


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "rum.yaml"
    config.write_text("partitions: many\nunknown_thing: 1\nkafka:\n  prefix: x\n")
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_CONFIG_FILE": str(config)})
    message = str(err.value)
    assert "kafka.partitions (RUM_KAFKA__PARTITIONS or RUM_PARTITIONS)" in message
    assert "unknown_thing" in message and "kafka.prefix" in message


def test_a_config_key_given_flat_and_nested_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "rum.yaml"
    config.write_text("partitions: 3\nkafka:\n  partitions: 4\n")
    with pytest.raises(ConfigError, match=r"kafka\.partitions is given twice"):
        load_settings({"RUM_CONFIG_FILE": str(config)})


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RUM_CONFIG_FILE"):
        load_settings({"RUM_CONFIG_FILE": str(tmp_path / "absent.yaml")})
    broken = tmp_path / "broken.yaml"
    broken.write_text("kafka: [\n")
    with pytest.raises(ConfigError, match="RUM_CONFIG_FILE"):
        load_settings({"RUM_CONFIG_FILE": str(broken)})


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        settings.kafka.partitions = 3  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017
        settings.enrich.geo.cache_size = 3


def test_local_broker_port_moves_the_default_bootstrap() -> None:
    assert load_settings({"RUM_KAFKA_PORT": "9192"}).kafka.bootstrap == "127.0.0.1:9192"
    explicit = load_settings({"RUM_KAFKA__PORT": "9192", "RUM_KAFKA_BOOTSTRAP": "kafka:29092"})
    assert explicit.kafka.bootstrap == "kafka:29092"


def test_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUM_KAFKA_PORT", "19092")
    monkeypatch.setenv("RUM_KAFKA__PARTITIONS", "3")
    settings = load_settings({})
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.kafka.partitions == 12


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUM_KAFKA__PARTITIONS", "3")
    monkeypatch.setenv("RUM_LOG_FORMAT", "json")
    settings = load_settings()
    assert (settings.kafka.partitions, settings.log.format) == (3, "json")


def test_the_scripts_own_variables_are_not_unknown_settings() -> None:
    env = {"RUM_REQUIRE_BROWSER": "1", "RUM_BROKER_DIR": ".broker-chaos", "RUM_PARTITIONS": "3"}
    settings = load_settings(env)
    assert settings.kafka.partitions == 3
    with pytest.raises(ConfigError, match="RUM_REQUIRE_BROWSERS"):
        load_settings({"RUM_REQUIRE_BROWSERS": "1"})


def test_gc_thresholds_are_three_numbers_or_python() -> None:
    assert load_settings({}).worker.gc_thresholds == (200_000, 10, 1000)
    assert load_settings({"RUM_GC_THRESHOLDS": "5000, 20, 100"}).worker.gc_thresholds == (5000, 20, 100)
    assert load_settings({"RUM_GC_THRESHOLDS": "python"}).worker.gc_thresholds is None
    for bad in ("5000,20", "0,10,10", "a,b,c", "-1,10,10", "99999999999999999999,1,1", "²,1,1"):
        with pytest.raises(ConfigError, match="RUM_GC_THRESHOLDS"):
            load_settings({"RUM_WORKER__GC_THRESHOLDS": bad})


@pytest.mark.parametrize(
    "env",
    [
        {"rum_kafka__partitions": "3"},
        {"Rum_Kafka__Partitions": "3"},
        {"rum_partitions": "3"},
        {"rum_kafka__nope": "3"},
        {"RUM_PARTITIONS": "12", "rum_kafka__partitions": "3"},
    ],
)
def test_names_not_in_upper_case_are_ignored(env: dict[str, str]) -> None:
    # Neither read nor checked: only upper-case RUM_ names are settings.
    assert load_settings(env).kafka.partitions == 12


def test_a_name_with_the_prefix_in_upper_case_must_be_spelt_in_upper_case() -> None:
    with pytest.raises(ConfigError, match="unknown settings: RUM_kafka__partitions"):
        load_settings({"RUM_kafka__partitions": "3"})


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("a.yaml", "5\n", "a number"),
        ("a.json", "[1]", "a list"),
        ("a.yml", "- a\n- b\n", "a list"),
        ("a.yaml", "hello\n", "text"),
    ],
)
def test_a_config_file_must_hold_a_mapping(tmp_path: Path, name: str, text: str, kind: str) -> None:
    config = tmp_path / name
    config.write_text(text)
    with pytest.raises(ConfigError, match=f"must hold a mapping of settings .*not {kind}$") as err:
        load_settings({"RUM_CONFIG_FILE": str(config)})
    assert str(config) in str(err.value)


def test_groups_without_values_in_a_config_file_are_empty(tmp_path: Path) -> None:
    config = tmp_path / "rum.yaml"
    config.write_text("kafka:\n  # partitions: 3\nrollups:\nenrich:\n  geo:\nworker:\n  batch_size: 7\n")
    settings = load_settings({"RUM_CONFIG_FILE": str(config)})
    assert (settings.kafka.partitions, settings.rollups.enabled, settings.worker.batch_size) == (12, True, 7)
    assert settings.enrich.geo.cache_size == load_settings({}).enrich.geo.cache_size
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert load_settings({"RUM_CONFIG_FILE": str(tmp_path / "empty.yaml")}) == load_settings({})


@pytest.mark.parametrize("value", ["5", "{a: 1}", "true"])
def test_cors_origins_of_the_wrong_kind_are_a_validation_error(tmp_path: Path, value: str) -> None:
    config = tmp_path / "rum.yaml"
    config.write_text(f"intake:\n  cors_origins: {value}\n")
    with pytest.raises(ConfigError, match=r"intake\.cors_origins \(RUM_INTAKE__CORS_ORIGINS"):
        load_settings({"RUM_CONFIG_FILE": str(config)})


def test_the_environment_may_be_given_by_keyword() -> None:
    settings = load_settings(environ={"RUM_KAFKA__PARTITIONS": "3"}, app_id="kw")
    assert (settings.kafka.partitions, settings.kafka.app_id) == (3, "kw")


def test_every_mistake_of_the_environment_is_reported_at_once() -> None:
    env = {
        "RUM_PARTITIONS": "3",
        "RUM_KAFKA__PARTITIONS": "4",
        "RUM_APP_ID": "a",
        "RUM_KAFKA__APP_ID": "b",
        "RUM_BATCH_SIZE": "0",
        "RUM_NOPE": "1",
    }
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    message = str(err.value)
    assert "unknown settings: RUM_NOPE" in message
    assert "RUM_KAFKA__PARTITIONS and RUM_PARTITIONS both set kafka.partitions" in message
    assert "RUM_KAFKA__APP_ID and RUM_APP_ID both set kafka.app_id" in message
    assert "worker.batch_size (RUM_WORKER__BATCH_SIZE or RUM_BATCH_SIZE)" in message
