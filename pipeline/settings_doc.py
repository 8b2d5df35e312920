"""The settings reference of docs/configuration.md, generated from the settings model.

    python -m pipeline.settings_doc            # rewrite the table in docs/configuration.md
    python -m pipeline.settings_doc --check    # exit 1 when the page and the model disagree

The table sits between ``<!-- settings:table -->`` markers; everything else on
the page is prose. Nested models (a field whose type is a pydantic model) are
listed field by field under a dotted name.
"""

from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipeline.docblocks import find_blocks, replace_block
from pipeline.settings import Settings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BLOCK = "table"


def _model_type(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds, when it holds one (not a union with other things)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _fields(
    model: type[BaseModel], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every leaf field of ``model`` with its path, nested models flattened in declaration order."""
    for name, info in model.model_fields.items():
        nested = _model_type(info.annotation)
        if nested is not None:
            yield from _fields(nested, (*path, name))
        else:
            yield (*path, name), info


def _env_names(info: FieldInfo, path: tuple[str, ...], prefix: str, delimiter: str) -> list[str]:
    """The environment variables that set a field.

    pydantic-settings reads a field with a validation alias under that alias
    (without the prefix) instead of its prefixed name, so the aliases are the names.
    """
    alias = info.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names = [c.upper() for c in choices if isinstance(c, str)]
    return names or [(prefix + delimiter.join(path)).upper()]


def _default(info: FieldInfo) -> str:
    """A field's default as a reader would type it (empty when there is none)."""
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if value is None or value == {} or value == () or value == "":
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, tuple | list):
        return "`" + ",".join(str(v) for v in value) + "`"
    return f"`{value}`"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def settings_table(model: type[BaseModel] | None = None) -> str:
    """The Markdown table of every setting: environment variable, config file key, default, meaning."""
    model = model or Settings
    config = model.model_config
    prefix = str(config.get("env_prefix") or "")
    delimiter = str(config.get("env_nested_delimiter") or "__")
    lines = [
        "| environment variable | config file key | default | meaning |",
        "|---|---|---|---|",
    ]
    for path, info in _fields(model):
        env = ", ".join(f"`{name}`" for name in _env_names(info, path, prefix, delimiter))
        key = ".".join(path)
        meaning = _cell(info.description or "")
        lines.append(f"| {env} | `{key}` | {_default(info)} | {meaning} |")
    return "\n".join(lines) + "\n"


def disagrees(page: str, model: type[BaseModel] | None = None) -> str | None:
    """Why ``page``'s settings table is not the one the model gives, or None when it is."""
    blocks = find_blocks(page, "settings")
    if BLOCK not in blocks:
        return f"no <!-- settings:{BLOCK} --> block"
    if blocks[BLOCK] != settings_table(model):
        return "the settings table differs from pipeline/settings.py (python -m pipeline.settings_doc)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the settings table of docs/configuration.md.")
    parser.add_argument("page", nargs="?", type=Path, default=PAGE, help="the page holding the table")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when it disagrees")
    args = parser.parse_args(argv)
    text = args.page.read_text()
    if args.check:
        problem = disagrees(text)
        if problem:
            print(f"{args.page}: {problem}")
            return 1
        return 0
    new = replace_block(text, "settings", BLOCK, settings_table())
    if new != text:
        args.page.write_text(new)
        print(f"updated {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
