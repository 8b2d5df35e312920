"""The environment of child processes: given settings replace both their names, defaults fill gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import load_settings
from pipeline.settings_env import child_env, setting_path, settings_environ
from pipeline.settings_sources import leaves


def test_a_default_is_not_added_when_the_nested_name_is_set() -> None:
    env = child_env({"RUM_WORKER__WEB_PORT": "6066"}, defaults={"worker.web_port": 0})
    assert "RUM_WEB_PORT" not in env
    assert load_settings(settings_environ(env)).worker.web_port == 6066


@pytest.mark.parametrize("given", [{}, {"RUM_WEB_PORT": "6067"}])
def test_a_default_fills_only_an_unset_setting(given: dict[str, str]) -> None:
    env = child_env(given, defaults={"worker.web_port": 0})
    assert load_settings(settings_environ(env)).worker.web_port == int(given.get("RUM_WEB_PORT", "0"))


NAMES = ["kafka.topic_prefix", "topic_prefix", "RUM_TOPIC_PREFIX", "RUM_KAFKA__TOPIC_PREFIX"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("parent", ["RUM_TOPIC_PREFIX", "RUM_KAFKA__TOPIC_PREFIX"])
def test_a_value_replaces_either_name_of_its_setting(name: str, parent: str) -> None:
    env = child_env({parent: "old.", "PATH": "/bin"}, {name: "new."})
    assert env["PATH"] == "/bin"
    assert env["RUM_KAFKA__TOPIC_PREFIX"] == "new." and "RUM_TOPIC_PREFIX" not in env
    assert load_settings(settings_environ(env)).kafka.topic_prefix == "new."


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(KeyError, match=r"kafka\.nope"):
        setting_path("kafka.nope")


def test_every_setting_survives_the_trip_through_a_child_environment(tmp_path: Path) -> None:
    rollups = tmp_path / "rollups.yaml"
    rollups.write_text("facets: []\n")
    parent = load_settings(
        {
            "RUM_INTAKE_CLIENT_TOKENS": "t1=shop,t2=*",
            "RUM_INTAKE_TRUSTED_PROXIES": "10.0.0.0/8,::1",
            "RUM_INTAKE_CORS_ORIGINS": "https://a.example,https://b.example",
            "RUM_GC_THRESHOLDS": "1000,10,10",
            "RUM_ROLLUPS": "false",
            "RUM_ROLLUPS_CONFIG": str(rollups),
            "RUM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "RUM_SASL_MECHANISM": "PLAIN",
            "RUM_SASL_USERNAME": "u",
            "RUM_SASL_PASSWORD": "pw",
            "RUM_KAFKA__PARTITIONS": "3",
        }
    )
    values = {}
    for path, _ in leaves(type(parent)):
        value = parent
        for part in path:
            value = getattr(value, part)
        values[".".join(path)] = value
    child = load_settings(settings_environ(child_env({"RUM_PARTITIONS": "7"}, values)))
    assert child == parent
