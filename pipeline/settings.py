"""One validated settings model for every component, nested per component.

``settings.kafka.partitions``, ``settings.intake.port``,
``settings.enrich.geo.database``… (groups in :mod:`pipeline.settings_groups`;
each registered enrichment's settings model hangs under ``enrich.<its name>``).

Values come from pydantic-settings' own sources, highest precedence first:

1. explicit values (``load_settings(overrides)``, command-line options and
   ``rum-pipeline --set group.field=value``);
2. the environment: ``RUM_<GROUP>__<FIELD>`` (``RUM_KAFKA__PARTITIONS``,
   ``RUM_ENRICH__GEO__DATABASE``), or a setting's old flat name
   (``RUM_PARTITIONS``) — both at once is an error;
3. a YAML (or JSON) file named by ``RUM_CONFIG_FILE``, nested keys
   (``kafka: {partitions: 6}``) or the old flat ones (``partitions: 6``);
4. the defaults.

Nothing is read at import time: call :func:`load_settings` at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from pipeline.enrich.ip import IpPolicy
from pipeline.errors import ConfigError
from pipeline.settings_errors import describe_errors
from pipeline.settings_groups import (
    INTAKE_MAX_PAYLOAD_CEILING,
    IntakeSettings,
    KafkaSettings,
    LogSettings,
    MonitorsSettings,
    RollupsSettings,
    WorkerSettings,
)
from pipeline.settings_sources import (
    FlatEnvSource,
    FlatKeysFile,
    MappingEnvSource,
    check_config_file,
    env_name,
    env_names,
    flat_names,
    place,
    source_names,
)

__all__ = ["INTAKE_MAX_PAYLOAD_CEILING", "CoreSettings", "IpPolicy", "Settings", "load_settings"]

M = TypeVar("M", bound=BaseModel)

#: What the sources of the settings being built read: the environment mapping and the config file.
_INPUTS: ContextVar[tuple[Mapping[str, str], Path | None]] = ContextVar("settings_inputs", default=({}, None))


class EnrichGroup(BaseModel):
    """The settings of the registered enrichments, one group per enrichment (filled in by the registry)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    if TYPE_CHECKING:
        # The groups are known once the registry is read: to a type checker, any name.
        def __getattr__(self, name: str) -> Any: ...


def _group(model: type[BaseModel]) -> Any:
    """A settings group's field: its validated defaults (read-only like the rest) and its docstring."""
    return Field(default_factory=lambda: model.model_validate({}), description=model.__doc__)


class CoreSettings(BaseSettings):
    """Every group of settings; ``enrich`` is given its enrichments' groups in :data:`Settings`.

    Built directly (``Settings(kafka={...})``) it reads no environment and no
    file: :func:`load_settings` tells the sources which mapping and file to read.
    """

    model_config = SettingsConfigDict(
        env_prefix="RUM_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = _group(KafkaSettings)
    worker: WorkerSettings = _group(WorkerSettings)
    rollups: RollupsSettings = _group(RollupsSettings)
    intake: IntakeSettings = _group(IntakeSettings)
    monitors: MonitorsSettings = _group(MonitorsSettings)
    log: LogSettings = _group(LogSettings)
    enrich: EnrichGroup = Field(default_factory=EnrichGroup, description=EnrichGroup.__doc__)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ, config_file = _INPUTS.get()
        sources = [
            init_settings,
            MappingEnvSource(settings_cls, environ),
            FlatEnvSource(settings_cls, environ),
        ]
        if config_file is not None:
            path = config_file

            def read() -> PydanticBaseSettingsSource:
                # Built by FlatKeysFile, which blames the file for what goes wrong reading it.
                if path.suffix in (".yaml", ".yml"):
                    return YamlConfigSettingsSource(settings_cls, yaml_file=path)
                return JsonConfigSettingsSource(settings_cls, json_file=path)

            sources.append(FlatKeysFile(settings_cls, read, f"RUM_CONFIG_FILE {config_file}"))
        return tuple(sources)

    def section(self, model: type[M]) -> M:
        """The group of ``enrich`` that holds ``model`` (an enrichment's settings)."""
        for name in type(self.enrich).model_fields:
            value = getattr(self.enrich, name)
            if isinstance(value, model):
                return value
        raise LookupError(f"no enrichment registers the settings model {model.__name__}")

    def topic(self, name: str) -> str:
        """Full name of a topic given its default name (adds the prefix)."""
        return f"{self.kafka.topic_prefix}{name}"

    @property
    def bootstrap_servers(self) -> list[str]:
        """The bootstrap servers as a list."""
        return [s.strip() for s in self.kafka.bootstrap.split(",")]


def _locked(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` frozen and refusing unknown keys, whatever the enrichment declared."""
    config = ConfigDict(frozen=True, extra="forbid")
    return type(model.__name__, (model,), {"__module__": model.__module__, "model_config": config})


def _compose(core: type[CoreSettings]) -> type[CoreSettings]:
    """``core`` whose ``enrich`` group holds each registered enrichment's settings under its name."""
    from pipeline.enrich.registry import ENRICHMENTS

    groups: dict[str, Any] = {}
    for plugin in ENRICHMENTS:
        model = plugin.settings_model
        if not model.model_fields:
            continue  # nothing to configure: no empty group in the settings and their docs
        if plugin.name in groups:
            raise TypeError(f"two enrichments named {plugin.name!r} declare settings")
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else None
        locked = _locked(model)
        groups[plugin.name] = (locked, Field(default_factory=locked, description=doc))
    enrich = create_model("EnrichSettings", __base__=EnrichGroup, __module__=__name__, **groups)
    enrich.__doc__ = EnrichGroup.__doc__
    settings = create_model(
        "Settings",
        __base__=core,
        __module__=__name__,
        enrich=(enrich, Field(default_factory=enrich, description=EnrichGroup.__doc__)),
    )
    settings.__doc__ = "Every rum-pipeline setting."
    flat_names(settings)  # raises when two settings claim one flat name
    return settings


if TYPE_CHECKING:
    Settings = CoreSettings
else:
    Settings = _compose(CoreSettings)


#: RUM_* variables that are not settings but are read elsewhere: the config file, and those of
#: the broker script, the install scripts and the tests, which may be set around a command.
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


def _nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Explicit values as a nested dict: keys are dotted (``kafka.partitions``), groups or old flat names."""
    table = flat_names(Settings)
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue  # an option not given on the command line
        if isinstance(value, Mapping) and key in Settings.model_fields:
            for inner, item in value.items():
                place(out, (key, *inner.split(".")), item, "explicit values")
        elif "." in key:
            place(out, tuple(key.split(".")), value, "explicit values")
        elif key in table:
            place(out, table[key], value, "explicit values")
        else:
            place(out, (key,), value, "explicit values")  # refused by the model as an unknown setting
    return out


def _check_environment(env: Mapping[str, str]) -> list[str]:
    """What is wrong with the ``RUM_*`` names: unknown ones, and every setting given by both its names."""
    known = env_names(Settings)
    unknown = sorted(k for k in env if k.startswith("RUM_") and k not in known and k not in EXTRA_ENV)
    problems = []
    if unknown:
        problems.append("unknown settings: " + ", ".join(unknown) + " (see `rum-pipeline settings`)")
    for flat, path in flat_names(Settings).items():
        old, new = f"RUM_{flat.upper()}", env_name(path)
        if old in env and new in env:
            problems.append(f"{new} and {old} both set {'.'.join(path)}: keep one")
    return problems


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> CoreSettings:
    """Build and validate the settings once; raise ConfigError naming every bad setting.

    ``environ`` (default: the process environment) is the only environment
    read. ``overrides`` win over everything: ``kafka={"partitions": 3}``,
    ``**{"kafka.partitions": 3}`` or an old flat name, ``partitions=3``.
    """
    env = os.environ if environ is None else environ
    # Reported together with the validation's errors: every mistake in one message.
    problems = _check_environment(env)
    config_file = env.get("RUM_CONFIG_FILE") or None
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        raise ConfigError(f"RUM_CONFIG_FILE: cannot read {path}: no such file")
    if path is not None:
        check_config_file(path)
    token = _INPUTS.set((env, path))
    try:
        settings = Settings(**_nested(overrides))
    except ValidationError as exc:
        problems.append("invalid settings:\n" + describe_errors(exc, Settings))
    except SettingsError as exc:  # a source could not decode a value: its message names the source
        problems.append(f"invalid settings: {source_names(str(exc), path)}")
    finally:
        _INPUTS.reset(token)
    if problems:
        raise ConfigError("\n".join(problems))
    return settings
