"""The JSON Schemas of the topics: loading, compiled validators, JSON paths.

The schema files in ``schemas/`` at the repository root are the public
contract for consumers in any language; this module is how Python code uses
them. Schemas reference each other by relative URI (``enriched-action.v1``
refers to ``raw-action.v1``); every file is loaded into one local registry,
so compiling never touches the network.

The fields each enrichment adds are the enriched action's ``$defs``, which
come from the enrichments themselves
(:func:`pipeline.enrich.registry.schema_defs`) and replace those of the file
when it is loaded. The committed file holds them too, so that it is complete
for consumers in other languages: ``python -m pipeline.schemas schemas``
writes it again after an enrichment changed (a test fails until then).
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from pipeline.errors import PipelineError

#: Folder of the schema files. A source checkout (and an editable install)
#: has it at the repository root, next to the package.
SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"

RAW_ACTION = "raw-action.v1"
ENRICHED_ACTION = "enriched-action.v1"
BAD_ROW = "bad-row.v1"
FACET_INDEX = "facet-index.v1"
MEASURE_ROLLUP = "measure-rollup.v1"
LATE_ACTION = "late-action.v1"
RUM_EVENT = "rum-event.v1"
RECOVERY_LEDGER = "recovery-ledger.v1"
MONITOR_EVENT = "monitor-event.v1"
MONITOR_STATE = "monitor-state.v1"

#: Every schema name; ``<name>.json`` is its file in :data:`SCHEMAS_DIR`.
SCHEMA_NAMES: tuple[str, ...] = (
    RAW_ACTION,
    ENRICHED_ACTION,
    BAD_ROW,
    FACET_INDEX,
    MEASURE_ROLLUP,
    LATE_ACTION,
    RUM_EVENT,
    RECOVERY_LEDGER,
    MONITOR_EVENT,
    MONITOR_STATE,
)

#: Replaces instance values in error messages: bad rows carry the payload
#: already, and echoing a 1 MiB value into every message would bloat them.
_MASK = "value"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed schema ``name`` (one of :data:`SCHEMA_NAMES`)."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    return _load(name)


@functools.cache
def _load(name: str) -> dict[str, Any]:
    path = SCHEMAS_DIR / f"{name}.json"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PipelineError(
            f"cannot read the JSON Schema {path}: {exc.strerror}; the schemas/ folder must sit "
            "next to the pipeline package (run from a source checkout or an editable install)"
        ) from exc
    schema: dict[str, Any] = orjson.loads(data)
    if name == ENRICHED_ACTION:
        # Imported here: only this schema needs the enrichments (and their libraries) loaded.
        from pipeline.enrich.registry import schema_defs

        schema["$defs"] = {**schema.get("$defs", {}), **schema_defs()}
    return schema


@functools.cache
def registry() -> jsonschema_rs.Registry:
    """A registry holding every schema under its ``$id``, so references resolve locally."""
    return jsonschema_rs.Registry([(_load(n)["$id"], _load(n)) for n in SCHEMA_NAMES])


def validator(name: str) -> jsonschema_rs.Validator:
    """The compiled validator of schema ``name``; compiled once, then cached."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    return _validator(name)


@functools.cache
def _validator(name: str) -> jsonschema_rs.Validator:
    # offline: a reference that is not in the registry is a bug in the
    # schema files, not something to fetch from the internet at run time.
    return jsonschema_rs.validator_for(load_schema(name), registry=registry(), mask=_MASK, offline=True)


def json_path(parts: Sequence[str | int]) -> str:
    """JSON path of an instance location: ``["a", "b", 0]`` -> ``$.a.b[0]``.

    Keys that are not identifiers use brackets: ``["a b"]`` -> ``$['a b']``.
    """
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}")
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            out.append(f"['{escaped}']")
    return "".join(out)


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


def json_type(value: Any) -> str:
    """JSON type name of a parsed value (``null`` for None)."""
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def schema_errors(name: str, obj: Any) -> list[tuple[str, str]]:
    """Every error of ``obj`` against schema ``name``, as (JSON path, message) pairs.

    A missing required property is reported at its parent object, and the
    message names the property (that is where jsonschema puts it).
    """
    errors: list[tuple[str, str]] = []
    for err in validator(name).iter_errors(obj):
        message = err.message
        if err.kind.name == "type":
            # The mask hides the value; its type is still worth saying.
            message = f"{message} (got {json_type(err.instance)})"
        errors.append((json_path(err.instance_path), message))
    return errors


def validate_record(name: str, obj: Any) -> list[str]:
    """Every error of ``obj`` against schema ``name`` as ``"<path>: <message>"``; empty if valid."""
    if validator(name).is_valid(obj):
        return []
    return [f"{path}: {message}" for path, message in schema_errors(name, obj)]


def main(argv: list[str] | None = None) -> int:
    """Write every schema, the enriched action's assembled with its enrichments' ``$defs``, to a folder."""
    parser = argparse.ArgumentParser(description="Write the assembled JSON Schemas to a folder.")
    parser.add_argument("folder", type=Path, help="where to write <name>.json for every schema")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for name in SCHEMA_NAMES:
        text = orjson.dumps(load_schema(name), option=orjson.OPT_INDENT_2)
        (args.folder / f"{name}.json").write_bytes(text + b"\n")
    print(f"wrote {len(SCHEMA_NAMES)} schemas to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
