"""Security settings for every Kafka client: TLS and SASL, from one place.

Every client the project creates takes ``**client_kwargs(settings)`` (aiokafka
producers, consumers, admin clients and bare clients); the faust app takes
``broker_credentials(settings)``, which faust maps back to the same aiokafka
arguments. :func:`describe_failure` turns a failed first connection into one
line that says whether the credentials, TLS or the network are to blame.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from pipeline.errors import ConfigError
from pipeline.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the SSL and SASL_SSL protocols (None for the others).

    Without ``ssl_cafile`` the system's CAs verify the brokers. A certificate
    or key that cannot be loaded is a ConfigError naming the settings.
    """
    if settings.kafka.security_protocol not in TLS_PROTOCOLS:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(
            cafile=settings.kafka.ssl_cafile,
            certfile=settings.kafka.ssl_certfile,
            keyfile=settings.kafka.ssl_keyfile,
        )
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"RUM_SSL_CAFILE / RUM_SSL_CERTFILE / RUM_SSL_KEYFILE: cannot load them into a TLS context: {exc}"
        ) from None
    # create_ssl_context always checks host names; some private clusters use
    # certificates without the brokers' names and turn it off on purpose.
    context.check_hostname = settings.kafka.ssl_check_hostname
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: security protocol, SASL and TLS.

    PLAINTEXT gives ``{"security_protocol": "PLAINTEXT"}``, aiokafka's own default.
    """
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka.security_protocol in SASL_PROTOCOLS:
        # The settings validation guarantees all three are set for SASL_*.
        assert settings.kafka.sasl_mechanism and settings.kafka.sasl_username and settings.kafka.sasl_password
        kwargs["sasl_mechanism"] = settings.kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka.sasl_username
        kwargs["sasl_plain_password"] = settings.kafka.sasl_password.get_secret_value()
    return kwargs


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """The faust app's ``broker_credentials``: None for PLAINTEXT, else SSL or SASL credentials.

    faust (``credentials_to_aiokafka_auth``) turns these into the same
    aiokafka arguments as :func:`client_kwargs`; SASLCredentials switches to
    SASL_SSL by itself when it is given a TLS context.
    """
    import faust

    protocol = settings.kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    assert settings.kafka.sasl_mechanism and settings.kafka.sasl_username and settings.kafka.sasl_password
    return faust.SASLCredentials(
        username=settings.kafka.sasl_username,
        password=settings.kafka.sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=settings.kafka.sasl_mechanism,
    )


def explain(settings: Settings, exc: BaseException) -> str | None:
    """A one-line reason for a connection failure caused by security settings, else None."""
    if isinstance(exc, SaslAuthenticationFailed):
        detail = str(exc).removeprefix("[Error 58] SaslAuthenticationFailed: ").strip() or "rejected"
        return (
            f"SASL {settings.kafka.sasl_mechanism} authentication as {settings.kafka.sasl_username!r} failed "
            f"({detail}); check RUM_SASL_USERNAME, RUM_SASL_PASSWORD and RUM_SASL_MECHANISM"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return (
            f"the broker does not enable SASL mechanism {settings.kafka.sasl_mechanism} ({exc}); "
            "set RUM_SASL_MECHANISM to one it enables"
        )
    if isinstance(exc, ConnectionResetError) and settings.kafka.security_protocol in TLS_PROTOCOLS:
        # What a plain-text listener does with a TLS ClientHello.
        return (
            f"the broker closed the connection during the TLS handshake; is this a "
            f"{settings.kafka.security_protocol} listener? check RUM_SECURITY_PROTOCOL and the port"
        )
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        return (
            f"TLS handshake failed ({reason}); check RUM_SSL_CAFILE, RUM_SSL_CHECK_HOSTNAME and that "
            "RUM_SECURITY_PROTOCOL matches the broker's listener"
        )
    return None


async def describe_failure(settings: Settings, timeout: float = 5.0) -> str | None:
    """Connect once to each bootstrap server and explain the first security failure, if any.

    aiokafka's bootstrap logs why each server failed and then raises a generic
    "Unable to bootstrap"; this repeats the first connection step to find the
    reason. None when no server fails for a security reason (or in time).
    """
    from pipeline.aiokafka_private import open_connection

    kwargs = client_kwargs(settings)
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                open_connection(host, int(port), request_timeout_ms=int(timeout * 1000), **kwargs), timeout
            )
        except (TimeoutError, OSError, KafkaError) as exc:
            reason = explain(settings, exc)
            if reason:
                return f"{server}: {reason}"
            continue
        conn.close()
    return None
