"""The environment of a child process that must see given settings, whichever name the parent used.

A setting has two environment names, the nested ``RUM_KAFKA__TOPIC_PREFIX``
and, for most, an old flat one, ``RUM_TOPIC_PREFIX``; both at once is an
error. A process that copies its environment for a child and sets one name
would clash with the other name set by the user, or be overridden by it:
:func:`child_env` removes both names of each setting it sets and writes the
nested one, and sets a default only where neither name is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from pipeline.settings_sources import PREFIX, env_name, env_names, flat_names, old_env_name


def _model() -> type[BaseModel]:
    from pipeline.settings import Settings  # here: pipeline.settings imports the registry's plugins

    return Settings


def setting_path(name: str, model: type[BaseModel] | None = None) -> tuple[str, ...]:
    """The setting ``name`` names: dotted (``kafka.partitions``), an old flat name or a ``RUM_*`` variable."""
    model = model or _model()
    if name in env_names(model):
        return env_names(model)[name]
    table = flat_names(model)
    if name in table:
        return table[name]
    path = tuple(name.split("."))
    if env_name(path) in env_names(model):
        return path
    raise KeyError(f"no setting is named {name!r} (see `rum-pipeline settings`)")


def names_of(path: tuple[str, ...], model: type[BaseModel] | None = None) -> tuple[str, ...]:
    """Every environment variable that sets ``path``: the nested one, then the flat one if any."""
    model = model or _model()
    old = old_env_name(path, model)
    return (env_name(path),) + ((old,) if old else ())


def env_text(value: Any) -> str:
    """A setting's value as environment text (a secret as its value: the child needs it)."""
    value = getattr(value, "get_secret_value", lambda: value)()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def child_env(
    environ: Mapping[str, str],
    values: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """A copy of ``environ`` in which ``values`` are set and ``defaults`` fill settings not set at all.

    Keys name settings as :func:`setting_path` accepts. Each value replaces
    both names of its setting and is written under the nested one; a default
    is written only when neither name of its setting is in ``environ``.
    """
    model = _model()
    env = dict(environ)
    for name, value in (defaults or {}).items():
        names = names_of(setting_path(name, model), model)
        if not any(n in env for n in names):
            env[names[0]] = env_text(value)
    for name, value in (values or {}).items():
        if value is None:
            continue  # an option not given
        names = names_of(setting_path(name, model), model)
        for n in names:
            env.pop(n, None)
        env[names[0]] = env_text(value)
    return env


def settings_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``RUM_*`` variables of ``environ``: what :func:`~pipeline.settings.load_settings` reads."""
    return {k: v for k, v in environ.items() if k.startswith(PREFIX)}
