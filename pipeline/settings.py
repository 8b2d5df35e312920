"""One validated settings model for every component.

Values come from ``RUM_*`` environment variables and, optionally, a YAML or
JSON config file named by ``RUM_CONFIG_FILE`` (environment variables win).
Nothing is read at import time: call :func:`load_settings` at start-up.

:class:`Settings` is :class:`CoreSettings` plus the settings model of every
registered enrichment (``pipeline.enrich.registry``), whose fields keep their
``RUM_<FIELD>`` names; an enrichment reads its own part with
:meth:`CoreSettings.section`.
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.enrich.ip import IpPolicy
from pipeline.errors import ConfigError

__all__ = ["CoreSettings", "IpPolicy", "Settings", "load_settings"]

M = TypeVar("M", bound=BaseModel)


#: Largest request body the intake may be set to take: its bad rows must fit the bad topic's 8 MiB.
INTAKE_MAX_PAYLOAD_CEILING = 6_000_000


class CoreSettings(BaseSettings):
    """The settings of rum-pipeline that belong to no enrichment; environment variable ``RUM_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RUM_", frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings gathers RUM_* from the mapping it is given; the process environment is not read again.
        return (init_settings,)

    kafka_bootstrap: str = Field(
        "",
        description="Kafka bootstrap servers, comma-separated host:port. "
        "Default: the local dev broker, 127.0.0.1:RUM_KAFKA_PORT.",
    )
    kafka_port: int = Field(9092, ge=1, le=65535, description="Port of the local dev broker (make broker).")
    topic_prefix: str = Field("", description="Prefix put before every topic name, e.g. 'staging.'.")
    partitions: int = Field(12, ge=1, le=10000, description="Partitions of the raw and enriched topics.")
    replication_factor: int = Field(1, ge=1, le=10, description="Replication factor of created topics.")
    app_id: str = Field("rum-pipeline", min_length=1, description="Consumer group / faust application id.")
    data_dir: Path = Field(Path(".rum-data"), description="Folder for worker state (RocksDB tables).")
    web_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of a worker's faust web server, which the pipeline does not use (0 = off). "
        "Metrics and health checks have their own port, RUM_METRICS_PORT.",
    )
    batch_size: int = Field(500, ge=1, le=100000, description="Max raw actions processed per batch.")
    batch_within: float = Field(0.1, gt=0, le=60, description="Max seconds to wait to fill a batch.")
    max_message_bytes: int = Field(
        1024 * 1024, ge=1, description="Raw messages larger than this are bad rows (kind size)."
    )
    max_depth: int = Field(
        20, ge=1, description="Raw messages nested deeper than this are bad rows (kind size)."
    )
    max_attributes: int = Field(
        1000, ge=1, description="Raw messages with more attributes are bad rows (kind size)."
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once",
        description="exactly_once: a worker writes each partition's outputs and its consumed offsets in "
        "one Kafka transaction (readers must use isolation.level=read_committed); at_least_once: "
        "plain writes, offsets committed after them (a crash may repeat outputs).",
    )
    dedupe_window: float = Field(
        0,
        ge=0,
        le=30 * 86400,
        description="Seconds of event time over which an action whose (application.id, session.id, "
        "action.id) was already seen on its raw partition is dropped as a duplicate. 0: 24 h plus the "
        "rollups' grace.",
    )
    rollups: bool = Field(True, description="Maintain the facet index and the measure rollups.")
    flush_interval: float = Field(
        1.0, ge=0.05, le=60, description="Seconds between rollup state flushes (and upsert updates)."
    )
    state_in_memory: int = Field(
        1_000_000,
        ge=0,
        description=(
            "Rollup state entries (partials and merged rollups) a worker keeps in memory; beyond that "
            "the ones whose windows end first go to a RocksDB database in the data folder. 0: no limit."
        ),
    )
    rollups_config: Path | None = Field(
        None, description="YAML file declaring facets, measures and rollups. Default: config/rollups.yaml."
    )
    session_timeout: float = Field(
        30.0, ge=6, le=300, description="Seconds before a silent worker's partitions move to the others."
    )
    monitor_interval: float = Field(
        5.0,
        ge=0.1,
        le=3600,
        description="Seconds between two evaluations of the monitors by `rum-pipeline serve`.",
    )
    monitor_group: str = Field(
        "",
        description="Consumer group in which `serve` instances share the monitors "
        "(each monitor is evaluated by one of them). Default: RUM_APP_ID with '-monitors' appended.",
    )
    gc_thresholds: Annotated[tuple[int, int, int] | None, NoDecode] = Field(
        (200_000, 10, 1000),
        description="A worker's garbage collector thresholds, gen0,gen1,gen2 (see Python's "
        "gc.set_threshold); 'python' keeps Python's own (700,10,10 in 3.11), which cost a rollup worker "
        "about a third of its CPU time in full collections.",
    )
    log_level: str = Field(
        "info", pattern="^(?i)(debug|info|warning|error|critical)$", description="Log level."
    )

    # kafka security
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None,
        validate_default=True,
        description="SASL mechanism (SASL_* protocols): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    sasl_username: str | None = Field(
        None, min_length=1, validate_default=True, description="SASL user name (SASL_* protocols)."
    )
    sasl_password: SecretStr | None = Field(
        None, validate_default=True, description="SASL password (SASL_* protocols); never shown."
    )
    ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CAs that sign the brokers' certificates (SSL, SASL_SSL). "
        "Default: the system's CAs.",
    )
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate, for TLS client authentication (SSL, SASL_SSL)."
    )
    ssl_keyfile: Path | None = Field(
        None, description="PEM private key of RUM_SSL_CERTFILE, when that file does not hold it."
    )
    ssl_check_hostname: bool = Field(
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
                raise ValueError(f"required with RUM_SECURITY_PROTOCOL={protocol}")
        else:
            wanted, kinds = protocol in ("SSL", "SASL_SSL"), "SSL or SASL_SSL"
            missing = value is None
        if missing:
            return value
        if not wanted:
            raise ValueError(f"only used with RUM_SECURITY_PROTOCOL={kinds}, which is {protocol}")
        if isinstance(value, Path):
            if not value.is_file():
                raise ValueError("no such file")
            if not os.access(value, os.R_OK):
                raise ValueError("file not readable")
            if name == "ssl_keyfile" and info.data.get("ssl_certfile", value) is None:
                raise ValueError("needs RUM_SSL_CERTFILE, the certificate this key belongs to")
        return value

    # intake
    intake_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the HTTP intake listens on (0.0.0.0: every interface).",
    )
    intake_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP intake (0: any free port).")
    # NoDecode: these arrive as plain text (pairs, CIDRs) that the validators
    # below parse, not as the JSON pydantic-settings expects for containers.
    intake_client_tokens: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Client tokens the intake accepts: token=application_id[,...] or a JSON object; "
        "application * = any. Empty: the intake is open to anyone.",
    )
    intake_trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (),
        description="CIDRs of reverse proxies whose X-Forwarded-For the intake believes, comma-separated.",
    )
    intake_cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        ("*",), description="Origins browsers may post from, comma-separated (* = any origin)."
    )
    intake_max_payload_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="Largest request body, compressed or not (larger: 413)."
    )
    intake_max_event_bytes: int = Field(
        1024 * 1024, ge=64, description="Events of this many bytes or more are rejected by the intake."
    )
    intake_max_in_flight_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Request bytes the intake holds at once; beyond it new requests get 429.",
    )
    intake_kafka_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds the intake waits for Kafka's acknowledgement before 503."
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

    @field_validator("intake_client_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> dict[str, str]:
        from pipeline.intake.config import parse_client_tokens

        return parse_client_tokens(value)

    @field_validator("intake_trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: Any) -> tuple[IPv4Network | IPv6Network, ...]:
        from pipeline.intake.config import parse_networks

        return parse_networks(value)

    @field_validator("intake_cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> tuple[str, ...]:
        from pipeline.intake.config import parse_origins

        return parse_origins(value)

    @model_validator(mode="after")
    def _check_intake_limits(self) -> CoreSettings:
        errors = []
        if self.intake_max_event_bytes > self.intake_max_payload_bytes:
            errors.append("RUM_INTAKE_MAX_EVENT_BYTES must not exceed RUM_INTAKE_MAX_PAYLOAD_BYTES")
        if self.intake_max_in_flight_bytes < self.intake_max_payload_bytes:
            errors.append("RUM_INTAKE_MAX_IN_FLIGHT_BYTES must be at least RUM_INTAKE_MAX_PAYLOAD_BYTES")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    # metrics and logs
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Port of a worker's Prometheus /metrics, /healthz and /ready (0 = off). "
        "When taken, the worker logs a warning and uses a free port.",
    )
    metrics_host: str = Field("0.0.0.0", min_length=1, description="Address the metrics server binds.")
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one JSON object per line (time, level, logger, message)."
    )

    @model_validator(mode="after")
    def _default_bootstrap(self) -> CoreSettings:
        # The local broker's port decides the default, so RUM_KAFKA_PORT alone
        # moves both `make broker` and every client to another port.
        if not self.kafka_bootstrap:
            object.__setattr__(self, "kafka_bootstrap", f"127.0.0.1:{self.kafka_port}")
        return self

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        if not value:
            return value
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value

    def section(self, model: type[M]) -> M:
        """The values of ``model``'s fields (an enrichment's settings), already validated here."""
        return model.model_construct(**{name: getattr(self, name) for name in model.model_fields})

    def topic(self, name: str) -> str:
        """Full name of a topic given its default name (adds the prefix)."""
        return f"{self.topic_prefix}{name}"

    @property
    def bootstrap_servers(self) -> list[str]:
        """The bootstrap servers as a list."""
        return [s.strip() for s in self.kafka_bootstrap.split(",")]

    # intake: timeouts, per-client budget and Kafka health
    intake_header_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a connection may take to send a request's headers (and stay idle between "
        "requests); then it is closed. Keep it above a load balancer's idle timeout.",
    )
    intake_body_timeout: float = Field(
        20.0, gt=0, le=3600, description="Seconds a request may take to send its whole body (longer: 408)."
    )
    intake_client_in_flight_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Share of RUM_INTAKE_MAX_IN_FLIGHT_BYTES one client address (IPv6: its /64) may hold; "
        "never less than one largest request.",
    )
    intake_kafka_check_interval: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between the intake's checks that Kafka answers; /healthz follows them.",
    )

    @model_validator(mode="after")
    def _check_intake_bad_row_room(self) -> CoreSettings:
        # A rejected line becomes a bad row holding its bytes (base64 at worst,
        # 4/3 larger); the bad topic takes 8 MiB per record.
        if self.intake_max_payload_bytes > INTAKE_MAX_PAYLOAD_CEILING:
            raise ValueError(
                f"RUM_INTAKE_MAX_PAYLOAD_BYTES must be at most {INTAKE_MAX_PAYLOAD_CEILING} so that a "
                "rejected event's bad row fits the bad topic"
            )
        return self


def _compose(core: type[CoreSettings]) -> type[CoreSettings]:
    """``core`` with the fields of every registered enrichment's settings model."""
    from pipeline.enrich.registry import settings_models

    models = settings_models()
    seen: dict[str, str] = {name: core.__name__ for name in core.model_fields}
    for model in models:
        for name in model.model_fields:
            if name in seen:
                raise TypeError(f"setting {name!r} is declared by both {seen[name]} and {model.__name__}")
            seen[name] = model.__name__
    namespace = {"__module__": __name__, "__qualname__": "Settings", "__doc__": "Every rum-pipeline setting."}
    # pydantic lists fields from the last base to the first: core last, so its
    # settings head the documented table, then each enrichment's in run order.
    return type("Settings", (*reversed(models), core), namespace)


if TYPE_CHECKING:
    Settings = CoreSettings
else:
    Settings = _compose(CoreSettings)


#: RUM_* variables that are not fields of Settings but are read elsewhere: the config file, and
#: those of the broker script, the install scripts and the tests, which may be set around a command.
EXTRA_ENV = frozenset(
    {
        "RUM_CONFIG_FILE",
        "RUM_BROKER_DIR",
        "RUM_BROKER_HEAP",
        "RUM_CACHE_DIR",
        "RUM_CHROMIUM",
        "RUM_REQUIRE_BROWSER",
        "RUM_TEST_CRASH_ACTIONS",
    }
)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"RUM_CONFIG_FILE: cannot read {path}: {exc.strerror}") from exc
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"RUM_CONFIG_FILE: {path} must hold a mapping of settings")
    return data


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> CoreSettings:
    """Build and validate the settings once; raise ConfigError naming every bad key."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = env.get("RUM_CONFIG_FILE")
    if config_file:
        values.update(_read_config_file(Path(config_file)))
    known = {f"RUM_{name.upper()}": name for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.startswith("RUM_") and k not in known and k not in EXTRA_ENV)
    for key, value in env.items():
        if key in known:
            values[known[key]] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    if unknown:
        raise ConfigError("unknown settings: " + ", ".join(unknown) + " (see `rum-pipeline settings`)")
    try:
        # _env_prefix lookups are disabled: values were gathered above from the given mapping.
        return Settings.model_validate(values)
    except ValidationError as exc:
        secret = {n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "settings"
            # Never echo a secret, nor the whole input of a model-level check (it holds them all).
            shown = "" if not err["loc"] or key in secret else f" (got {err.get('input')!r})"
            lines.append(f"  RUM_{key.upper()}: {err['msg']}{shown}")
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
