"""The intake's settings: parsing and the errors a user sees."""

from __future__ import annotations

import ipaddress

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert (settings.intake_host, settings.intake_port) == ("127.0.0.1", 8080)
    assert settings.intake_client_tokens == {}
    assert settings.intake_max_payload_bytes == 5 * 1024 * 1024
    assert settings.intake_max_event_bytes == 1024 * 1024


@pytest.mark.parametrize("value", ["pub1=shop, pub2=*", '{"pub1": "shop", "pub2": "*"}'])
def test_tokens_as_pairs_or_json(value: str) -> None:
    settings = load_settings({"RUM_INTAKE_CLIENT_TOKENS": value})
    assert settings.intake_client_tokens == {"pub1": "shop", "pub2": "*"}


def test_trusted_proxies_and_origins() -> None:
    settings = load_settings(
        {"RUM_INTAKE_TRUSTED_PROXIES": "10.0.0.0/8, ::1", "RUM_INTAKE_CORS_ORIGINS": "https://shop.example/"}
    )
    assert settings.intake_trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    assert settings.intake_cors_origins == ("https://shop.example",)


def test_every_bad_intake_key_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "RUM_INTAKE_CLIENT_TOKENS": "pub1",
                "RUM_INTAKE_TRUSTED_PROXIES": "10.0.0.300/8",
                "RUM_INTAKE_CORS_ORIGINS": "shop.example",
                "RUM_INTAKE_PORT": "70000",
            }
        )
    message = str(caught.value)
    for key in ("CLIENT_TOKENS", "TRUSTED_PROXIES", "CORS_ORIGINS", "PORT"):
        assert f"RUM_INTAKE_{key}" in message
    assert "token=application_id" in message and "10.0.0.300/8" in message


def test_limits_must_be_consistent() -> None:
    with pytest.raises(ConfigError, match="RUM_INTAKE_MAX_EVENT_BYTES"):
        load_settings({"RUM_INTAKE_MAX_EVENT_BYTES": "2000", "RUM_INTAKE_MAX_PAYLOAD_BYTES": "1500"})
    with pytest.raises(ConfigError, match="RUM_INTAKE_MAX_IN_FLIGHT_BYTES"):
        load_settings(
            {
                "RUM_INTAKE_MAX_IN_FLIGHT_BYTES": "4096",
                "RUM_INTAKE_MAX_PAYLOAD_BYTES": "8192",
                "RUM_INTAKE_MAX_EVENT_BYTES": "1024",
            }
        )


def test_values_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Plain text in real environment variables, not JSON: how a container passes them.
    monkeypatch.setenv("RUM_INTAKE_CLIENT_TOKENS", "pub1=shop,pub2=*")
    monkeypatch.setenv("RUM_INTAKE_TRUSTED_PROXIES", "10.0.0.0/8")
    monkeypatch.setenv("RUM_INTAKE_CORS_ORIGINS", "https://shop.example")
    settings = load_settings()
    assert settings.intake_client_tokens == {"pub1": "shop", "pub2": "*"}
    assert settings.intake_trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)
    assert settings.intake_cors_origins == ("https://shop.example",)
