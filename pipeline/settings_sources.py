"""Where settings come from, and the flat ``RUM_<NAME>`` variables that still name nested ones.

The settings are nested per component (``kafka.partitions``,
``enrich.geo.database``). A setting that had a flat name before the nesting
carries it as :class:`Formerly` metadata; :func:`flat_names` reads that table
from the model, so the old ``RUM_<NAME>`` variable and the old top-level
config-file key keep setting the same field.

The sources are pydantic-settings' own: its environment source (reading a
given mapping rather than ``os.environ``) for ``RUM_<GROUP>__<FIELD>``, its
YAML and JSON file sources, and its init source for explicit values. This
module adds one source, :class:`FlatEnvSource`, for the flat names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from pipeline.errors import ConfigError

PREFIX = "RUM_"
DELIMITER = "__"


@dataclass(frozen=True, slots=True)
class Formerly:
    """``Annotated`` metadata: the flat name a setting had before the nesting (``partitions``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Secret:
    """``Annotated`` metadata: the setting holds credentials (shown masked, never in an error)."""


def is_secret(info: FieldInfo) -> bool:
    """Whether a setting holds credentials: a ``SecretStr``, or marked with :class:`Secret`."""
    return "SecretStr" in str(info.annotation) or any(isinstance(m, Secret) for m in info.metadata)


def masked(info: FieldInfo, value: Any) -> Any:
    """``value`` as it may be shown: a secret's characters as stars, a token table's keys as ``****``."""
    if not is_secret(info) or value is None:
        return value
    if isinstance(value, dict):
        return ",".join(f"****={application}" for application in value.values())
    return "**********"


def model_type(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds, when it holds one (not a union with other things)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every leaf setting of ``model`` with its path, groups walked in declaration order."""
    for name, info in model.model_fields.items():
        nested = model_type(info.annotation)
        if nested is not None:
            yield from leaves(nested, (*path, name))
        else:
            yield (*path, name), info


def former_name(info: FieldInfo) -> str | None:
    """The flat name a field declares with :class:`Formerly`, if any."""
    for item in info.metadata:
        if isinstance(item, Formerly):
            return item.name
    return None


def flat_names(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Old flat name (lower case, no prefix) -> path of the nested setting it sets."""
    table: dict[str, tuple[str, ...]] = {}
    for path, info in leaves(model):
        name = former_name(info)
        if name is None:
            continue
        if name in table:
            raise TypeError(f"flat name {name!r} given to both {'.'.join(table[name])} and {'.'.join(path)}")
        table[name] = path
    return table


def env_name(path: tuple[str, ...]) -> str:
    """The nested environment variable of a setting: ``RUM_KAFKA__PARTITIONS``."""
    return (PREFIX + DELIMITER.join(path)).upper()


def old_env_name(path: tuple[str, ...], model: type[BaseModel]) -> str | None:
    """The flat environment variable that also sets ``path``, if it has one."""
    for name, where in flat_names(model).items():
        if where == path:
            return (PREFIX + name).upper()
    return None


def env_names(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Every ``RUM_*`` variable the model reads (nested and flat) -> the setting it sets."""
    names = {env_name(path): path for path, _ in leaves(model)}
    names.update({(PREFIX + flat).upper(): path for flat, path in flat_names(model).items()})
    return names


def place(tree: dict[str, Any], path: tuple[str, ...], value: Any, origin: str) -> None:
    """Put ``value`` at ``path`` in a nested dict; a value already there is a conflict."""
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(path)} is given both as a group and as a value")
        node = child
    if path[-1] in node:
        raise ConfigError(f"{origin}: {'.'.join(path)} is given twice (its nested and its flat name)")
    node[path[-1]] = value


#: How a file's top level that is not a mapping is named in the error.
_KINDS = {int: "a number", float: "a number", bool: "a boolean", str: "text", list: "a list"}


def check_config_file(path: Path) -> None:
    """Refuse a config file that cannot be parsed or whose top level is not a mapping of settings.

    It is parsed as pydantic-settings' file sources parse it (YAML or JSON by
    its suffix), so that their errors, which would not name the file, are
    caught here first. An empty file is no settings.
    """
    try:
        with open(path, encoding="utf-8") as file:
            data = yaml.safe_load(file) if path.suffix in (".yaml", ".yml") else json.load(file)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"RUM_CONFIG_FILE: cannot read {path}: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"RUM_CONFIG_FILE: {path} must hold a mapping of settings (e.g. `kafka: {{partitions: 6}}`), "
            f"not {_KINDS.get(type(data), 'a ' + type(data).__name__)}"
        )


def _empty_groups(data: dict[str, Any], model: type[BaseModel]) -> None:
    """Groups given with no value (a YAML key whose children are all commented out) become empty."""
    for name, info in model.model_fields.items():
        group = model_type(info.annotation)
        if group is None or name not in data:
            continue
        if data[name] is None:
            data[name] = {}
        elif isinstance(data[name], dict):
            _empty_groups(data[name], group)


def nest_flat_keys(data: Mapping[str, Any], model: type[BaseModel], origin: str) -> dict[str, Any]:
    """A config mapping with its old flat top-level keys moved to their nested place."""
    table = flat_names(model)
    groups = {name for name, info in model.model_fields.items() if model_type(info.annotation)}
    nested: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        # `rollups: false` is the old switch; `rollups: {enabled: false}` the new group.
        is_group = key in groups and (isinstance(value, Mapping) or value is None)
        (flat if key in table and not is_group else nested)[key] = value
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in nested.items()}
    _empty_groups(out, model)
    for key, value in flat.items():
        place(out, table[key], value, origin)
    return out


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``.

    The flat names are left out: :class:`FlatEnvSource` reads them, and one of
    them, ``RUM_ROLLUPS``, is also the name this source gives the whole
    ``rollups`` group as JSON.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls, env_prefix=PREFIX, env_nested_delimiter=DELIMITER)
        flat = {(PREFIX + name).lower() for name in flat_names(settings_cls)}
        # env_vars is what the source looks names up in, lower-cased. Only upper-case RUM_ names are
        # settings (the names the checks of unknown and doubly given names look at): rum_kafka__port
        # is ignored, as every name not starting with RUM_ always was.
        self.env_vars = {
            k.lower(): v for k, v in environ.items() if k.startswith(PREFIX) and k.lower() not in flat
        }


class FlatEnvSource(PydanticBaseSettingsSource):
    """The old flat ``RUM_<NAME>`` variables, each put at its nested setting (values as text)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.values: dict[str, Any] = {}
        for name, path in flat_names(settings_cls).items():
            value = environ.get((PREFIX + name).upper())
            if value is not None:
                place(self.values, path, value, "environment")

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: ``__call__`` gives every value at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.values


class FlatKeysFile(PydanticBaseSettingsSource):
    """A config file source whose old flat top-level keys are moved to their nested place.

    ``read`` builds pydantic-settings' file source (which reads the file as it
    is built): a file that cannot be read is reported as this file's error,
    and no other source's error is mistaken for one.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        read: Callable[[], PydanticBaseSettingsSource],
        origin: str,
    ) -> None:
        super().__init__(settings_cls)
        self.read = read
        self.origin = origin

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: ``__call__`` gives every value at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        try:
            data = self.read()()
        except (OSError, ValueError, yaml.YAMLError) as exc:  # changed since check_config_file read it
            raise ConfigError(f"{self.origin}: cannot read it: {exc}") from None
        return nest_flat_keys(data, self.settings_cls, self.origin)


#: pydantic-settings' names of the sources, as a user knows them.
_SOURCES = {
    "MappingEnvSource": "the environment",
    "FlatEnvSource": "the environment",
    "InitSettingsSource": "the explicit values",
}


def source_names(message: str, config_file: Path | None) -> str:
    """A pydantic-settings error message with its source's class name replaced by what the user set."""
    for name, known in {**_SOURCES, "FlatKeysFile": f"RUM_CONFIG_FILE {config_file}"}.items():
        message = message.replace(f'source "{name}"', known)
    return message
