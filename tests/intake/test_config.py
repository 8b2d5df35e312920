"""The intake's settings: parsing and the errors a user sees."""

from __future__ import annotations

import ipaddress

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert (settings.intake.host, settings.intake.port) == ("127.0.0.1", 8080)
    assert settings.intake.client_tokens == {}
    assert settings.intake.max_payload_bytes == 5 * 1024 * 1024
    assert settings.intake.max_event_bytes == 1024 * 1024


@pytest.mark.parametrize("value", ["pub1=shop, pub2=*", '{"pub1": "shop", "pub2": "*"}'])
def test_tokens_as_pairs_or_json(value: str) -> None:
    settings = load_settings({"RUM_INTAKE_CLIENT_TOKENS": value})
    assert settings.intake.client_tokens == {"pub1": "shop", "pub2": "*"}


def test_trusted_proxies_and_origins() -> None:
    settings = load_settings(
        {"RUM_INTAKE_TRUSTED_PROXIES": "10.0.0.0/8, ::1", "RUM_INTAKE_CORS_ORIGINS": "https://shop.example/"}
    )
    assert settings.intake.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    assert settings.intake.cors_origins == ("https://shop.example",)


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
    assert settings.intake.client_tokens == {"pub1": "shop", "pub2": "*"}
    assert settings.intake.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)
    assert settings.intake.cors_origins == ("https://shop.example",)


def test_timeouts_share_and_check_interval() -> None:
    settings = load_settings({})
    assert (settings.intake.header_timeout, settings.intake.body_timeout) == (10.0, 20.0)
    assert (settings.intake.client_in_flight_share, settings.intake.kafka_check_interval) == (0.25, 1.0)
    with pytest.raises(ConfigError, match="RUM_INTAKE_CLIENT_IN_FLIGHT_SHARE"):
        load_settings({"RUM_INTAKE_CLIENT_IN_FLIGHT_SHARE": "0"})
    with pytest.raises(ConfigError, match="RUM_INTAKE_BODY_TIMEOUT"):
        load_settings({"RUM_INTAKE_BODY_TIMEOUT": "-1"})


def test_a_payload_limit_whose_bad_rows_would_not_fit_the_bad_topic_is_refused() -> None:
    assert load_settings({"RUM_INTAKE_MAX_PAYLOAD_BYTES": "6000000"}).intake.max_payload_bytes == 6_000_000
    with pytest.raises(ConfigError, match="at most 6000000"):
        load_settings(
            {"RUM_INTAKE_MAX_PAYLOAD_BYTES": "6000001", "RUM_INTAKE_MAX_IN_FLIGHT_BYTES": "99999999"}
        )
