"""Group and facet values: JSON scalars as they are, anything else by its JSON text."""

from __future__ import annotations

from typing import Any

import orjson

#: Group values used as they are (anything else goes through ``scalar``).
PLAIN = frozenset({str, int, float, bool, type(None)})


def scalar(value: Any) -> Any:
    """Group values are JSON scalars; anything else is grouped by its JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
