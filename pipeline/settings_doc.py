"""The settings reference of docs/configuration.md, generated from the settings model.

    python -m pipeline.settings_doc            # rewrite the table in docs/configuration.md
    python -m pipeline.settings_doc --check    # exit 1 when the page and the model disagree

The tables sit between ``<!-- settings:table -->`` markers; everything else on
the page is prose. One table per group (``kafka``, ``enrich.geo``…), each
setting under its dotted name with its ``RUM_<GROUP>__<FIELD>`` variable and
the flat ``RUM_<NAME>`` it had before the nesting, when it had one.
"""

from __future__ import annotations

import argparse
import enum
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipeline.docblocks import find_blocks, replace_block
from pipeline.settings import Settings
from pipeline.settings_sources import env_name, leaves, model_type, old_env_name

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BLOCK = "table"


def _group_description(model: type[BaseModel], path: tuple[str, ...]) -> str:
    """The description of the group at ``path`` (the field holding it)."""
    description = ""
    for name in path:
        info = model.model_fields[name]
        description = info.description or ""
        model = model_type(info.annotation) or model
    return description


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
    """Every setting, one table per group: nested name, environment variables, default, meaning."""
    model = model or Settings
    header = ["| setting | environment variable | old name | default | meaning |", "|---|---|---|---|---|"]
    lines: list[str] = []
    group: tuple[str, ...] | None = None
    for path, info in leaves(model):
        if path[:-1] != group:
            group = path[:-1]
            title = ".".join(group) or "(top level)"
            about = _cell(_group_description(model, group))
            if lines:
                lines.append("")
            lines += [f"#### `{title}`", "", *([about, ""] if about else []), *header]
        old = old_env_name(path, model)
        cells = [
            f"`{'.'.join(path)}`",
            f"`{env_name(path)}`",
            f"`{old}`" if old else "",
            _default(info),
            _cell(info.description or ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
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
    parser = argparse.ArgumentParser(description="Write the settings tables of docs/configuration.md.")
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
