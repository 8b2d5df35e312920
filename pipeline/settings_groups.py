"""The groups of settings that belong to no enrichment.

``kafka``, ``worker``, ``rollups``, ``intake``, ``monitors`` and ``log``.

Each field that had a flat ``RUM_<NAME>`` variable before the settings were
nested names it with :class:`~pipeline.settings_sources.Formerly`.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import NoDecode

from pipeline.settings_sources import Formerly as F
from pipeline.settings_sources import Secret

#: Largest request body the intake may be set to take: its bad rows must fit the bad topic's 8 MiB.
INTAKE_MAX_PAYLOAD_CEILING = 6_000_000


class Group(BaseModel):
    """A frozen group of settings that refuses keys it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(Group):
    """The brokers, the topics and how clients authenticate."""

    bootstrap: Annotated[str, F("kafka_bootstrap")] = Field(
        "",
        description="Kafka bootstrap servers, comma-separated host:port. "
        "Default: the local dev broker, 127.0.0.1:kafka.port.",
    )
    port: Annotated[int, F("kafka_port")] = Field(
        9092, ge=1, le=65535, description="Port of the local dev broker (make broker)."
    )
    topic_prefix: Annotated[str, F("topic_prefix")] = Field(
        "", description="Prefix put before every topic name, e.g. 'staging.'."
    )
    partitions: Annotated[int, F("partitions")] = Field(
        12, ge=1, le=10000, description="Partitions of the raw and enriched topics."
    )
    replication_factor: Annotated[int, F("replication_factor")] = Field(
        1, ge=1, le=10, description="Replication factor of created topics."
    )
    app_id: Annotated[str, F("app_id")] = Field(
        "rum-pipeline", min_length=1, description="Consumer group / faust application id."
    )
    session_timeout: Annotated[float, F("session_timeout")] = Field(
        30.0, ge=6, le=300, description="Seconds before a silent worker's partitions move to the others."
    )
    security_protocol: Annotated[
        Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], F("security_protocol")
    ] = Field(
        "PLAINTEXT", description="How clients talk to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: Annotated[
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None, F("sasl_mechanism")
    ] = Field(
        None,
        validate_default=True,
        description="SASL mechanism (SASL_* protocols): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    sasl_username: Annotated[str | None, F("sasl_username")] = Field(
        None, min_length=1, validate_default=True, description="SASL user name (SASL_* protocols)."
    )
    sasl_password: Annotated[SecretStr | None, F("sasl_password")] = Field(
        None, validate_default=True, description="SASL password (SASL_* protocols); never shown."
    )
    ssl_cafile: Annotated[Path | None, F("ssl_cafile")] = Field(
        None,
        description="PEM file of the CAs that sign the brokers' certificates (SSL, SASL_SSL). "
        "Default: the system's CAs.",
    )
    ssl_certfile: Annotated[Path | None, F("ssl_certfile")] = Field(
        None, description="PEM client certificate, for TLS client authentication (SSL, SASL_SSL)."
    )
    ssl_keyfile: Annotated[Path | None, F("ssl_keyfile")] = Field(
        None, description="PEM private key of kafka.ssl_certfile, when that file does not hold it."
    )
    ssl_check_hostname: Annotated[bool, F("ssl_check_hostname")] = Field(
        True, description="Check that a broker's TLS certificate names the host connected to."
    )

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile"
    )
    @classmethod
    def _check_security(cls, value: Any, info: ValidationInfo) -> Any:
        # Fields validate in order: security_protocol (and ssl_certfile for the
        # key) are in info.data unless they failed themselves.
        protocol = info.data.get("security_protocol")
        if protocol is None:
            return value
        name = info.field_name or ""
        if name.startswith("sasl_"):
            wanted, kinds = protocol.startswith("SASL_"), "SASL_PLAINTEXT or SASL_SSL"
            missing = value is None or (isinstance(value, SecretStr) and not value.get_secret_value())
            if wanted and missing:
                raise ValueError(f"required with kafka.security_protocol={protocol}")
        else:
            wanted, kinds = protocol in ("SSL", "SASL_SSL"), "SSL or SASL_SSL"
            missing = value is None
        if missing:
            return value
        if not wanted:
            raise ValueError(f"only used with kafka.security_protocol={kinds}, which is {protocol}")
        if isinstance(value, Path):
            if not value.is_file():
                raise ValueError("no such file")
            if not os.access(value, os.R_OK):
                raise ValueError("file not readable")
            if name == "ssl_keyfile" and info.data.get("ssl_certfile", value) is None:
                raise ValueError("needs kafka.ssl_certfile, the certificate this key belongs to")
        return value

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        if not value:
            return value
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value

    @model_validator(mode="after")
    def _default_bootstrap(self) -> KafkaSettings:
        # The local broker's port decides the default, so kafka.port alone
        # moves both `make broker` and every client to another port.
        if not self.bootstrap:
            object.__setattr__(self, "bootstrap", f"127.0.0.1:{self.port}")
        return self


class WorkerSettings(Group):
    """A worker process: its batches, limits, guarantee, state folder, metrics port and memory."""

    data_dir: Annotated[Path, F("data_dir")] = Field(
        Path(".rum-data"), description="Folder for worker state (RocksDB tables), and serve's view spill."
    )
    web_port: Annotated[int, F("web_port")] = Field(
        0,
        ge=0,
        le=65535,
        description="Port of a worker's faust web server, which the pipeline does not use (0 = off). "
        "Metrics and health checks have their own port, worker.metrics_port.",
    )
    batch_size: Annotated[int, F("batch_size")] = Field(
        500, ge=1, le=100000, description="Max raw actions processed per batch."
    )
    batch_within: Annotated[float, F("batch_within")] = Field(
        0.1, gt=0, le=60, description="Max seconds to wait to fill a batch."
    )
    max_message_bytes: Annotated[int, F("max_message_bytes")] = Field(
        1024 * 1024, ge=1, description="Raw messages larger than this are bad rows (kind size)."
    )
    max_depth: Annotated[int, F("max_depth")] = Field(
        20, ge=1, description="Raw messages nested deeper than this are bad rows (kind size)."
    )
    max_attributes: Annotated[int, F("max_attributes")] = Field(
        1000, ge=1, description="Raw messages with more attributes are bad rows (kind size)."
    )
    processing_guarantee: Annotated[Literal["exactly_once", "at_least_once"], F("processing_guarantee")] = (
        Field(
            "exactly_once",
            description="exactly_once: a worker writes each partition's outputs and its consumed offsets in "
            "one Kafka transaction (readers must use isolation.level=read_committed); at_least_once: "
            "plain writes, offsets committed after them (a crash may repeat outputs).",
        )
    )
    dedupe_window: Annotated[float, F("dedupe_window")] = Field(
        0,
        ge=0,
        le=30 * 86400,
        description="Seconds of event time over which an action whose (application.id, session.id, "
        "action.id) was already seen on its raw partition is dropped as a duplicate. 0: 24 h plus the "
        "rollups' grace.",
    )
    metrics_port: Annotated[int, F("metrics_port")] = Field(
        9464,
        ge=0,
        le=65535,
        description="Port of a worker's Prometheus /metrics, /healthz and /ready (0 = off). "
        "When taken, the worker logs a warning and uses a free port.",
    )
    metrics_host: Annotated[str, F("metrics_host")] = Field(
        "0.0.0.0", min_length=1, description="Address the metrics server binds."
    )
    # NoDecode: the text form is parsed below, not as the JSON pydantic-settings expects for containers.
    gc_thresholds: Annotated[tuple[int, int, int] | None, NoDecode, F("gc_thresholds")] = Field(
        (200_000, 10, 1000),
        description="The garbage collector thresholds of a worker (and of serve), gen0,gen1,gen2 (see "
        "Python's gc.set_threshold); 'python' keeps Python's own (700,10,10 in 3.11), which cost a rollup "
        "worker about a third of its CPU time in full collections.",
    )

    @field_validator("gc_thresholds", mode="before")
    @classmethod
    def _parse_gc_thresholds(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in ("python", "default"):
            return None
        parts = [p.strip() for p in text.split(",")]
        numbers = [int(p) for p in parts if p.isascii() and p.isdigit() and len(p) <= 9]
        if len(numbers) != 3 or len(parts) != 3 or numbers[0] == 0:
            raise ValueError(
                "expected three whole numbers gen0,gen1,gen2, 0 < gen0 and each below 10**9 "
                "(e.g. 200000,10,1000), or 'python'"
            )
        return tuple(numbers)


class RollupsSettings(Group):
    """The facet index and the measure rollups a worker maintains."""

    enabled: Annotated[bool, F("rollups")] = Field(
        True, description="Maintain the facet index and the measure rollups."
    )
    config: Annotated[Path | None, F("rollups_config")] = Field(
        None, description="YAML file declaring facets, measures and rollups. Default: config/rollups.yaml."
    )
    flush_interval: Annotated[float, F("flush_interval")] = Field(
        1.0, ge=0.05, le=60, description="Seconds between rollup state flushes (and upsert updates)."
    )
    state_in_memory: Annotated[int, F("state_in_memory")] = Field(
        1_000_000,
        ge=0,
        description=(
            "Rollup state entries (partials and merged rollups) a worker keeps in memory; beyond that "
            "the ones whose windows end first go to a RocksDB database in the data folder. 0: no limit."
        ),
    )


class MonitorsSettings(Group):
    """The monitors `rum-pipeline serve` evaluates."""

    interval: Annotated[float, F("monitor_interval")] = Field(
        5.0,
        ge=0.1,
        le=3600,
        description="Seconds between two evaluations of the monitors by `rum-pipeline serve`.",
    )
    group: Annotated[str, F("monitor_group")] = Field(
        "",
        description="Consumer group in which `serve` instances share the monitors "
        "(each monitor is evaluated by one of them). Default: kafka.app_id with '-monitors' appended.",
    )


class LogSettings(Group):
    """The logs of every command."""

    level: Annotated[str, F("log_level")] = Field(
        "info", pattern="^(?i)(debug|info|warning|error|critical)$", description="Log level."
    )
    format: Annotated[Literal["text", "json"], F("log_format")] = Field(
        "text", description="text, or json: one JSON object per line (time, level, logger, message)."
    )


class IntakeSettings(Group):
    """The HTTP intake: where it listens, whom it accepts, its limits and timeouts."""

    host: Annotated[str, F("intake_host")] = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the HTTP intake listens on (0.0.0.0: every interface).",
    )
    port: Annotated[int, F("intake_port")] = Field(
        8080, ge=0, le=65535, description="Port of the HTTP intake (0: any free port)."
    )
    # NoDecode: these arrive as plain text (pairs, CIDRs) that the validators
    # below parse, not as the JSON pydantic-settings expects for containers.
    client_tokens: Annotated[dict[str, str], NoDecode, F("intake_client_tokens"), Secret()] = Field(
        default_factory=dict,
        description="Client tokens the intake accepts: token=application_id[,...] or a JSON object; "
        "application * = any. Empty: the intake is open to anyone. Shown with each token as ****.",
    )
    trusted_proxies: Annotated[
        tuple[IPv4Network | IPv6Network, ...], NoDecode, F("intake_trusted_proxies")
    ] = Field(
        (),
        description="CIDRs of reverse proxies whose X-Forwarded-For the intake believes, comma-separated.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode, F("intake_cors_origins")] = Field(
        ("*",), description="Origins browsers may post from, comma-separated (* = any origin)."
    )
    max_payload_bytes: Annotated[int, F("intake_max_payload_bytes")] = Field(
        5 * 1024 * 1024, ge=1024, description="Largest request body, compressed or not (larger: 413)."
    )
    max_event_bytes: Annotated[int, F("intake_max_event_bytes")] = Field(
        1024 * 1024, ge=64, description="Events of this many bytes or more are rejected by the intake."
    )
    max_in_flight_bytes: Annotated[int, F("intake_max_in_flight_bytes")] = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Request bytes the intake holds at once; beyond it new requests get 429.",
    )
    kafka_timeout: Annotated[float, F("intake_kafka_timeout")] = Field(
        10.0, gt=0, le=300, description="Seconds the intake waits for Kafka's acknowledgement before 503."
    )
    header_timeout: Annotated[float, F("intake_header_timeout")] = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a connection may take to send a request's headers (and stay idle between "
        "requests); then it is closed. Keep it above a load balancer's idle timeout.",
    )
    body_timeout: Annotated[float, F("intake_body_timeout")] = Field(
        20.0, gt=0, le=3600, description="Seconds a request may take to send its whole body (longer: 408)."
    )
    client_in_flight_share: Annotated[float, F("intake_client_in_flight_share")] = Field(
        0.25,
        gt=0,
        le=1,
        description="Share of intake.max_in_flight_bytes one client address (IPv6: its /64) may hold; "
        "never less than one largest request.",
    )
    kafka_check_interval: Annotated[float, F("intake_kafka_check_interval")] = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between the intake's checks that Kafka answers; /healthz follows them.",
    )

    @field_validator("client_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> dict[str, str]:
        from pipeline.intake.config import parse_client_tokens

        return parse_client_tokens(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: Any) -> tuple[IPv4Network | IPv6Network, ...]:
        from pipeline.intake.config import parse_networks

        return parse_networks(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> tuple[str, ...]:
        from pipeline.intake.config import parse_origins

        return parse_origins(value)

    @model_validator(mode="after")
    def _check_limits(self) -> IntakeSettings:
        errors = []
        if self.max_event_bytes > self.max_payload_bytes:
            errors.append("intake.max_event_bytes must not exceed intake.max_payload_bytes")
        if self.max_in_flight_bytes < self.max_payload_bytes:
            errors.append("intake.max_in_flight_bytes must be at least intake.max_payload_bytes")
        # A rejected line becomes a bad row holding its bytes (base64 at worst,
        # 4/3 larger); the bad topic takes 8 MiB per record.
        if self.max_payload_bytes > INTAKE_MAX_PAYLOAD_CEILING:
            errors.append(
                f"intake.max_payload_bytes must be at most {INTAKE_MAX_PAYLOAD_CEILING} so that a "
                "rejected event's bad row fits the bad topic"
            )
        if errors:
            raise ValueError("; ".join(errors))
        return self
