"""Validation errors of the settings, each naming the setting and the variables that set it.

A secret is never echoed, nor is the input of a group-level check (it holds
the whole group, secrets included) or of an unknown key (it may be a
misspelt secret).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, SecretStr, ValidationError

from pipeline.settings_env import names_of
from pipeline.settings_sources import is_secret, leaves


def _names(path: tuple[str, ...], model: type[BaseModel]) -> str:
    """``RUM_KAFKA__PARTITIONS or RUM_PARTITIONS``: the variables that set ``path``."""
    return " or ".join(names_of(path, model))


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    """One indented line per error of ``exc``: setting, variables, message and, when safe, the value."""
    settings = {path: info for path, info in leaves(model)}
    dotted = sorted((".".join(p) for p in settings), key=len, reverse=True)
    mentioned = re.compile(r"\b(" + "|".join(re.escape(d) for d in dotted) + r")\b")

    def with_names(text: str) -> str:
        # A group-level check names the settings it compares: say which variables those are.
        return mentioned.sub(lambda m: f"{m.group(1)} ({_names(tuple(m.group(1).split('.')), model)})", text)

    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        # The setting is the longest leading part of the location that is a setting (a tuple's item is not).
        path = next((loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in settings), None)
        message = err["msg"].removeprefix("Value error, ")
        if path is None:
            where = ".".join(loc) or "settings"
            lines.append(f"  {where}: {with_names(message)}")
            continue
        secret = is_secret(settings[path]) or isinstance(err.get("input"), SecretStr)
        shown = "" if secret else f" (got {err.get('input')!r})"
        lines.append(f"  {'.'.join(path)} ({_names(path, model)}): {message}{shown}")
    return "\n".join(lines)
