"""Kafka security settings: validation, aiokafka arguments and faust credentials."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError
from click.testing import CliRunner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.kafka_auth import broker_credentials, client_kwargs, explain
from pipeline.settings import load_settings

SASL = {"RUM_SASL_MECHANISM": "PLAIN", "RUM_SASL_USERNAME": "rum", "RUM_SASL_PASSWORD": "s3cr3t-pw"}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate and its key (the certificate doubles as the CA file)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("pem")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=rum-test-ca", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    garbage = folder / "garbage.pem"
    garbage.write_text("not a certificate\n")
    return {"cert": cert, "key": key, "garbage": garbage}


def _faust_view(credentials: Any) -> dict[str, Any]:
    """The aiokafka arguments faust derives from the app's broker_credentials (None values dropped)."""
    return {k: v for k, v in credentials_to_aiokafka_auth(credentials).items() if v is not None}


def _ca_names(context: ssl.SSLContext) -> list[str]:
    return [dict(item[0] for item in ca["subject"])["commonName"] for ca in context.get_ca_certs()]


def test_plaintext_is_aiokafkas_default_and_no_faust_credentials() -> None:
    settings = load_settings({})
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert client_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(settings) is None
    assert _faust_view(None) == client_kwargs(settings)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_plaintext_maps_the_same_for_aiokafka_and_faust(mechanism: str) -> None:
    settings = load_settings(
        {"RUM_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL, "RUM_SASL_MECHANISM": mechanism}
    )
    expected = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism.upper(),
        "sasl_plain_username": "rum",
        "sasl_plain_password": "s3cr3t-pw",
    }
    assert client_kwargs(settings) == expected
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert _faust_view(credentials) == expected
    assert "s3cr3t-pw" not in repr(credentials)


def test_sasl_ssl_carries_a_context_that_trusts_the_given_ca(pem: dict[str, Path]) -> None:
    settings = load_settings(
        {"RUM_SECURITY_PROTOCOL": "SASL_SSL", **SASL, "RUM_SSL_CAFILE": str(pem["cert"])}
    )
    kwargs = client_kwargs(settings)
    context = kwargs.pop("ssl_context")
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_plain_password"] == "s3cr3t-pw"
    assert _ca_names(context) == ["rum-test-ca"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    view = _faust_view(broker_credentials(settings))
    assert _ca_names(view.pop("ssl_context")) == ["rum-test-ca"]
    assert view == kwargs  # faust switches SASLCredentials to SASL_SSL when it has a context


def test_ssl_with_client_certificate_and_no_hostname_check(pem: dict[str, Path]) -> None:
    settings = load_settings(
        {
            "RUM_SECURITY_PROTOCOL": "ssl",
            "RUM_SSL_CAFILE": str(pem["cert"]),
            "RUM_SSL_CERTFILE": str(pem["cert"]),
            "RUM_SSL_KEYFILE": str(pem["key"]),
            "RUM_SSL_CHECK_HOSTNAME": "false",
        }
    )
    kwargs = client_kwargs(settings)
    assert set(kwargs) == {"security_protocol", "ssl_context"} and kwargs["security_protocol"] == "SSL"
    assert not kwargs["ssl_context"].check_hostname
    assert kwargs["ssl_context"].verify_mode is ssl.CERT_REQUIRED  # still verifies the chain
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert _faust_view(credentials)["security_protocol"] == "SSL"


def test_a_file_that_is_not_pem_is_a_config_error(pem: dict[str, Path]) -> None:
    settings = load_settings({"RUM_SECURITY_PROTOCOL": "SSL", "RUM_SSL_CAFILE": str(pem["garbage"])})
    with pytest.raises(ConfigError, match="RUM_SSL_CAFILE"):
        client_kwargs(settings)


def test_sasl_protocols_need_mechanism_user_and_password() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_SECURITY_PROTOCOL": "SASL_SSL", "RUM_SASL_PASSWORD": ""})
    lines = str(err.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "kafka.sasl_mechanism (RUM_KAFKA__SASL_MECHANISM or RUM_SASL_MECHANISM)",
        "kafka.sasl_username (RUM_KAFKA__SASL_USERNAME or RUM_SASL_USERNAME)",
        "kafka.sasl_password (RUM_KAFKA__SASL_PASSWORD or RUM_SASL_PASSWORD)",
    ]
    assert all("required with kafka.security_protocol=SASL_SSL" in line for line in lines)


def test_security_settings_that_the_protocol_does_not_use_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_SASL_USERNAME": "rum", "RUM_SSL_CAFILE": str(ca)})
    message = str(err.value)
    assert "RUM_SASL_USERNAME): only used with kafka.security_protocol=SASL_PLAINTEXT" in message
    assert "RUM_SSL_CAFILE): only used with kafka.security_protocol=SSL or SASL_SSL" in message
    with pytest.raises(ConfigError, match=r"RUM_SSL_CAFILE\): only used"):
        load_settings({"RUM_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL, "RUM_SSL_CAFILE": str(ca)})


def test_files_must_exist_and_a_key_needs_its_certificate(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("x")
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                "RUM_SECURITY_PROTOCOL": "SSL",
                "RUM_SSL_CAFILE": str(tmp_path / "missing.pem"),
                "RUM_SSL_KEYFILE": str(key),
                "RUM_SSL_CHECK_HOSTNAME": "maybe",
            }
        )
    message = str(err.value)
    assert "RUM_SSL_CAFILE): no such file" in message
    assert "RUM_SSL_KEYFILE): needs kafka.ssl_certfile" in message
    assert "RUM_SSL_CHECK_HOSTNAME" in message


def test_unknown_protocol_and_mechanism_are_named() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"RUM_SECURITY_PROTOCOL": "TLS", "RUM_SASL_MECHANISM": "GSSAPI"})
    message = str(err.value)
    protocols = "'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"
    assert f"RUM_SECURITY_PROTOCOL): Input should be {protocols} (got 'TLS')" in message
    assert "RUM_SASL_MECHANISM): Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'" in message


def test_the_password_is_never_shown() -> None:
    with pytest.raises(ConfigError) as err:  # refused with PLAINTEXT, yet not echoed
        load_settings({"RUM_SASL_PASSWORD": "s3cr3t-pw"})
    assert "RUM_SASL_PASSWORD" in str(err.value) and "s3cr3t-pw" not in str(err.value)
    env = {"RUM_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL}
    result = CliRunner().invoke(main, ["settings"], env=env)
    assert result.exit_code == 0, result.output
    assert "s3cr3t-pw" not in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("kafka.")}
    assert lines["kafka.sasl_password"].split()[1] == "**********"
    assert lines["kafka.security_protocol"].split()[1] == "SASL_PLAINTEXT"
    assert lines["kafka.sasl_username"].split()[1] == "rum"
    assert "RUM_KAFKA__SASL_USERNAME (RUM_SASL_USERNAME)" in lines["kafka.sasl_username"]


def test_explain_names_the_settings_to_fix_without_the_password() -> None:
    settings = load_settings({"RUM_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL})
    failed = SaslAuthenticationFailed("Authentication failed: Invalid username or password")
    reason = explain(settings, failed)
    assert reason is not None
    assert "SASL PLAIN authentication as 'rum' failed (Authentication failed" in reason
    assert "RUM_SASL_PASSWORD" in reason and "s3cr3t-pw" not in reason
    assert "RUM_SASL_MECHANISM" in (explain(settings, UnsupportedSaslMechanismError()) or "")
    assert explain(settings, ConnectionRefusedError()) is None  # not a security failure
