"""Settings holding credentials: never in an error message, masked where settings are shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.settings import load_settings


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        ("sekrit1=shop,sekrit2", "entry 2: expected token=application_id"),
        (json.dumps({"sekrit1": "shop", "sekrit2": ""}), "entry 2: the application id"),
        (json.dumps({"sekrit1": "shop", "sekrit 2": "shop"}), "entry 2: a client token must be"),
        (json.dumps({"sekrit1": "shop", "sekrit2": 5}), "entry 2: the application id"),
    ],
)
@pytest.mark.parametrize("name", ["RUM_INTAKE_CLIENT_TOKENS", "RUM_INTAKE__CLIENT_TOKENS"])
def test_a_malformed_client_token_entry_is_named_by_its_number(name: str, value: str, entry: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({name: value})
    message = str(err.value)
    assert entry in message and "intake.client_tokens" in message
    assert "sekrit" not in message


def test_client_tokens_in_a_config_file_are_not_echoed(tmp_path: Path) -> None:
    config = tmp_path / "rum.yaml"
    config.write_text("intake:\n  client_tokens:\n    sekrit1: shop\n    sekrit2: [x]\n")
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_CONFIG_FILE": str(config)})
    assert "entry 2" in str(err.value) and "sekrit" not in str(err.value)


def test_settings_shows_credentials_masked() -> None:
    env = {
        "RUM_INTAKE_CLIENT_TOKENS": "sekrit1=shop,sekrit2=*",
        "RUM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "RUM_SASL_MECHANISM": "PLAIN",
        "RUM_SASL_USERNAME": "user",
        "RUM_SASL_PASSWORD": "hunter2",
    }
    result = CliRunner().invoke(main, ["settings"], env=env)
    assert result.exit_code == 0, result.output
    assert "sekrit" not in result.output and "hunter2" not in result.output
    shown = {line.split()[0]: line.split()[1] for line in result.output.splitlines() if line.strip()}
    assert shown["intake.client_tokens"] == "****=shop,****=*"
    assert shown["kafka.sasl_password"] == "**********"
    assert shown["kafka.sasl_username"] == "user"
