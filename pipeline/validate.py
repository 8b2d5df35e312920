"""Validation of raw actions: the first step of the hot path.

:class:`RawValidator` turns the bytes of a raw Kafka record into either the
parsed action (a dict, ready for enrichment) or a :class:`Failure` that says
which kind of bad row it becomes and lists every error with its JSON path.
Everything expensive (the compiled schema) is built once, in the constructor.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from pipeline.schemas import RAW_ACTION, json_path, json_type, schema_errors, validator

FailureKind = Literal["parse", "schema", "size"]

#: An integer literal orjson cannot hold exactly: it reads integers in
#: [-2**63, 2**64 - 1] exactly and any other one as a float, silently losing
#: digits. Those have at least 19 digits (negative) or 20; the preceding
#: ':', '[' or ',' skips most digit runs inside strings (ids, URLs).
_BIG_INTEGER = re.compile(rb"[:\[,]\s*(?:-\d{19}|\d{20})")
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_TWO_TO_63 = float(2**63)
#: Big integers named one by one in the warnings; the rest are counted.
_LISTED_BIG_INTEGERS = 10
#: Name under which the validator's own warnings appear in ``pipeline.warnings``.
WARNING_SOURCE = "validate"


class _IntegerText(str):
    """The decimal text of an integer beyond orjson's range, marked for the walk that reports it."""

    __slots__ = ()


def _int_or_text(text: str) -> int | str:
    # Python refuses to convert more than 4300 digits: such a literal stays text too.
    if len(text) < 19:
        return int(text)
    try:
        value = int(text)
    except ValueError:
        return _IntegerText(text)
    return value if _INT_MIN <= value <= _INT_MAX else _IntegerText(text)


#: From this size on, :meth:`RawValidator.exact_integers` looks at the values before scanning the bytes.
_WALK_BYTES = 8192
#: Values of a large payload looked at for inexact integers before its bytes are scanned instead.
_WALKED_VALUES = 1000


def _inexact_values(obj: dict[str, Any], budget: int) -> bool | None:
    """Whether ``obj`` (orjson's) may hold an integer literal it could not keep exactly.

    orjson reads any other integer as a float, of magnitude 2**63 at least,
    and refuses one beyond a double's range, which :func:`_exact_parse` then
    keeps as :class:`_IntegerText`: True when such a value is there (a float
    written as such, ``1e19``, too: the exact parse then finds no integer),
    False when none is, None when ``obj`` has more than ``budget`` values.
    """
    stack: list[Any] = [obj]
    seen = 0
    while stack:
        node = stack.pop()
        values = node.values() if type(node) is dict else node
        seen += len(values)
        if seen > budget:
            return None
        for value in values:
            kind = type(value)
            if kind is float:
                if not -_TWO_TO_63 < value < _TWO_TO_63:
                    return True
            elif kind is int:
                # A float date that check() made an int (the schema bounds dates today).
                if not _INT_MIN <= value <= _INT_MAX:
                    return True
            elif kind is dict or kind is list:
                stack.append(value)
            elif kind is _IntegerText:
                return True
    return False


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a raw record was rejected: the bad-row kind and (JSON path, message) pairs."""

    kind: FailureKind
    errors: list[tuple[str, str]]


class RawValidator:
    """Checks raw action payloads against the size limits and ``raw-action.v1.json``.

    Limits, checked before the schema so that hostile input is rejected cheaply:

    - ``max_bytes``: size of the payload in bytes, checked before parsing.
    - ``max_depth``: nesting of objects and arrays; the top-level object is
      level 1, each object or array inside a container adds a level, scalars
      add none (``{"context": {"items": ["a"]}}`` is 3 deep).
    - ``max_attributes``: number of attributes, where an attribute is an
      object key at any depth (keys of objects inside arrays included; array
      elements themselves are not attributes).
    """

    def __init__(self, max_bytes: int = 1 << 20, max_depth: int = 20, max_attributes: int = 1000) -> None:
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_attributes = max_attributes
        self._validator = validator(RAW_ACTION)

    def check(self, payload: bytes) -> dict[str, Any] | Failure:
        """Return the parsed action, or the Failure that makes ``payload`` a bad row.

        Order: size in bytes, UTF-8 and JSON parsing, top-level object,
        depth and attribute limits, then the schema (every error reported).
        A valid action is parsed once and returned as is, except that an
        integral float ``date`` (``1.7e12``) becomes an int, so downstream
        window arithmetic always sees integers.
        """
        size = len(payload)
        if size > self.max_bytes:
            return Failure(
                "size", [("$", f"message is {size} bytes, more than the limit of {self.max_bytes}")]
            )
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            # orjson refuses integers beyond a double's range as "infinity":
            # valid JSON all the same, kept exactly by exact_integers().
            exact = _exact_parse(payload) if "infinity" in exc.msg else None
            if exact is None:
                return self._parse_failure(payload, exc)
            obj = exact
        if type(obj) is not dict:
            return Failure(
                "schema", [("$", f"expected a JSON object at the top level, got {json_type(obj)}")]
            )
        # Every key is followed by its own ':' and every container opens with
        # its own '{' or '[', so these byte counts bound the attribute count
        # and the depth from above; a typical action is far below both and
        # skips the walk over the parsed object.
        if (
            # Each attribute also owns the 3 bytes of its '"":' at least, so
            # small payloads cannot exceed the attribute limit at all.
            (size > 3 * self.max_attributes and payload.count(b":") > self.max_attributes)
            or payload.count(b"{") + payload.count(b"[") > self.max_depth
        ):
            error = self._measure(obj)
            if error is not None:
                return Failure("size", [error])
        # is_valid stops at the first error and builds no error objects, so
        # valid actions (the common case) take the cheap path.
        if not self._validator.is_valid(obj):
            return Failure("schema", schema_errors(RAW_ACTION, obj))
        date = obj["date"]
        if type(date) is float:
            obj["date"] = int(date)
        return obj

    def exact_integers(
        self, payload: bytes, event: dict[str, Any], warnings: list[dict[str, str]]
    ) -> dict[str, Any] | Failure:
        """``event`` (as :meth:`check` returned it) with integers beyond 64 bits kept exactly.

        orjson would turn ``123456789012345678901234567890`` into
        ``1.2345678901234568e+29``. When the payload holds such a literal, it
        is parsed again with the standard library, every such integer
        becomes its decimal text (a string: JSON consumers in most languages
        cannot hold the number either) and a warning names its path. The
        result is checked against the schema again, since a string may stand
        where a number is required. Payloads without one are returned as is,
        at the cost of one regex scan.
        """
        if len(payload) >= _WALK_BYTES:
            # A large payload is mostly long strings: a look at its few values
            # is cheaper than a scan of its bytes (~1 ns each).
            found = _inexact_values(event, _WALKED_VALUES)
            if found is False:
                return event
        else:
            found = None
        # A C-speed scan for 19 digits in a row first: the regex alone costs
        # ~30 ns a byte on digit-rich payloads, more than the rest of a clean action.
        if found is None and (
            _NINETEEN_DIGITS not in payload.translate(_DIGITS_TO_ZERO) or _BIG_INTEGER.search(payload) is None
        ):
            return event
        # Reached only after check() bounded the depth, so the recursive
        # standard parser cannot hit the recursion limit.
        exact = json.loads(payload, parse_int=_int_or_text, parse_float=_finite, parse_constant=_no_constant)
        paths = _replace_integer_texts(exact)
        if not paths:
            return event  # the digits were inside strings
        if not self._validator.is_valid(exact):
            return Failure("schema", schema_errors(RAW_ACTION, exact))
        if type(exact["date"]) is float:
            exact["date"] = int(exact["date"])  # as check() does
        for path in paths[:_LISTED_BIG_INTEGERS]:
            warnings.append(
                {
                    "enrichment": WARNING_SOURCE,
                    "path": json_path(path)[2:],
                    "message": "integer beyond 64 bits kept exactly as its decimal text (a string)",
                }
            )
        if len(paths) > _LISTED_BIG_INTEGERS:
            warnings.append(
                {
                    "enrichment": WARNING_SOURCE,
                    "path": "",
                    "message": f"{len(paths) - _LISTED_BIG_INTEGERS} more integers beyond 64 bits "
                    "kept as decimal text",
                }
            )
        return exact

    def _parse_failure(self, payload: bytes, exc: orjson.JSONDecodeError) -> Failure:
        if "depth" in exc.msg or "recursion" in exc.msg:
            # orjson refuses nesting beyond its own limit (1024) before the
            # walk in check() can measure it: that is a size failure too.
            return Failure("size", [("$", f"nested deeper than {self.max_depth} levels")])
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as err:
            return Failure("parse", [("$", f"not valid UTF-8: {err.reason} at byte {err.start}")])
        message = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (byte {exc.pos})"
        return Failure("parse", [("$", message)])

    def _measure(self, obj: dict[str, Any]) -> tuple[str, str] | None:
        """The first size error of ``obj`` as (JSON path, message), or None.

        Walks one nesting level at a time (iterative: no recursion limit to
        hit; one depth test per level rather than per value, measured about
        20% faster than a depth-first stack) and stops as soon as a limit is
        crossed, so a huge message costs no more than the limits allow.
        """
        max_attributes = self.max_attributes
        attributes = 0
        level: list[Any] = [obj]
        depth = 1
        while level:
            deeper: list[Any] = []
            append = deeper.append
            for node in level:
                if type(node) is dict:
                    attributes += len(node)
                    if attributes > max_attributes:
                        return (
                            "$",
                            f"more than {max_attributes} attributes (object keys, counted at every depth)",
                        )
                    node = node.values()
                for child in node:
                    kind = type(child)
                    if kind is dict or kind is list:
                        append(child)
            if deeper and depth >= self.max_depth:
                path = json_path(_path_deeper_than(obj, self.max_depth))
                return path, f"nested deeper than {self.max_depth} levels (objects and arrays)"
            level = deeper
            depth += 1
        return None


def _path_deeper_than(obj: dict[str, Any], max_depth: int) -> list[str | int]:
    """Location of the first object or array at level ``max_depth + 1``.

    Only called once a message is known to be too deep, to make the error
    point at the offending value; the hot walk does not track paths.
    """
    stack: list[tuple[Any, list[str | int]]] = [(obj, [])]
    while stack:
        node, path = stack.pop()
        if len(path) >= max_depth:
            return path
        items = node.items() if type(node) is dict else enumerate(node)
        for key, child in items:
            if type(child) is dict or type(child) is list:
                stack.append((child, [*path, key]))
    return []


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number is infinity when parsed as double")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _exact_parse(payload: bytes) -> Any:
    """``payload`` parsed by the standard library with big integers as text; None if that fails too.

    Floats beyond a double's range stay a parse failure: no exact form exists.
    """
    try:
        return json.loads(payload, parse_int=_int_or_text, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def _replace_integer_texts(obj: dict[str, Any]) -> list[list[str | int]]:
    """Turn every :class:`_IntegerText` in ``obj`` into a plain string; return their paths."""
    found: list[list[str | int]] = []
    stack: list[tuple[Any, list[str | int]]] = [(obj, [])]
    while stack:
        node, path = stack.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, child in items:
            kind = type(child)
            if kind is _IntegerText:
                node[key] = str(child)
                found.append([*path, key])
            elif kind is dict or kind is list:
                stack.append((child, [*path, key]))
    found.sort(key=lambda p: [str(x) for x in p])
    return found
