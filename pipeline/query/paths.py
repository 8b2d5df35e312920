"""Attribute paths into enriched actions: ``action.target.name``, ``geo.country``, ``usr.id``.

A path is a dotted list of identifiers; the ``@`` prefix of the RUM Explorer
(``@geo.country``) is accepted and stripped. Paths are validated and compiled
once into small getters, so reading one from an event costs a few dict lookups.

Two ways to read a path:

- :func:`compile_path` returns the raw value or :data:`MISSING` when any step
  of the path is absent or is not an object. JSON ``null`` comes back as
  ``None``, distinct from :data:`MISSING`, because a caller that copies values
  (an index, a debugger) must be able to tell them apart.
- :func:`compile_values` / :func:`values_at` return the *list of values* a
  facet or filter sees: a list is flattened so that each element counts
  ("list attributes count each element"), lists of objects are walked into
  (``context.products.name`` reads ``name`` from every product), and ``null``
  values are dropped because for facets and filters ``null`` means "no value".
"""

from __future__ import annotations

import itertools
import linecache
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Final

__all__ = [
    "MISSING",
    "PathError",
    "compile_many",
    "compile_path",
    "compile_projection",
    "compile_through_list",
    "compile_values",
    "normalize_path",
    "values_at",
]


class _Missing:
    """Type of :data:`MISSING`; a single falsy instance that prints nicely."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: Returned by a compiled getter when the path does not exist in the event.
MISSING: Final = _Missing()

# Datadog attribute keys are identifiers; a hyphen is allowed after the first
# character because keys such as ``x-request-id`` occur in real contexts.
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


class PathError(ValueError):
    """An attribute path is malformed; ``offset`` is the 0-based index of the problem."""

    def __init__(self, path: str, reason: str, offset: int = 0) -> None:
        super().__init__(f"bad path {path!r}: {reason}")
        self.path = path
        self.reason = reason
        self.offset = offset


def normalize_path(path: str) -> str:
    """Validate ``path`` and return it without an ``@`` prefix; raise :class:`PathError`."""
    if not isinstance(path, str):
        raise PathError(repr(path), "a path must be a string")
    start = 1 if path.startswith("@") else 0
    body = path[start:]
    if not body:
        raise PathError(path, "empty path", start)
    offset = start
    for segment in body.split("."):
        if not segment:
            raise PathError(path, "empty segment", offset)
        match = _SEGMENT.match(segment)
        end = match.end() if match else 0
        if end != len(segment):
            bad = segment[end]
            what = "a space" if bad.isspace() else repr(bad)
            where = "at the start of a segment" if end == 0 else "in a segment"
            raise PathError(
                path, f"{what} is not allowed {where} (use letters, digits, _ and -)", offset + end
            )
        offset += len(segment) + 1
    return body


@lru_cache(maxsize=1024)
def compile_path(path: str) -> Callable[[Any], Any]:
    """Compile ``path`` into a getter returning the raw value or :data:`MISSING`.

    Only objects are walked into: when a step is absent, or a non-final step is
    not an object (a list included), the getter returns :data:`MISSING`.
    """
    keys = tuple(normalize_path(path).split("."))
    # Specialised closures for the usual depths avoid a Python loop per call.
    if len(keys) == 1:
        (k1,) = keys

        def get1(event: Any) -> Any:
            return event.get(k1, MISSING) if isinstance(event, dict) else MISSING

        return get1
    if len(keys) == 2:
        k1, k2 = keys

        def get2(event: Any) -> Any:
            if isinstance(event, dict):
                v = event.get(k1)
                if isinstance(v, dict):
                    return v.get(k2, MISSING)
            return MISSING

        return get2
    if len(keys) == 3:  # action.target.name
        k1, k2, k3 = keys

        def get3(event: Any) -> Any:
            if isinstance(event, dict):
                v = event.get(k1)
                if isinstance(v, dict):
                    v = v.get(k2)
                    if isinstance(v, dict):
                        return v.get(k3, MISSING)
            return MISSING

        return get3

    def get_n(event: Any) -> Any:
        value = event
        for key in keys:
            if not isinstance(value, dict):
                return MISSING
            value = value.get(key, MISSING)
        return value

    return get_n


@lru_cache(maxsize=1024)
def compile_many(path: str) -> Callable[[Sequence[dict[str, Any]]], list[Any]]:
    """``compile_path`` for a list of events at once: their raw values (or :data:`MISSING`), in order.

    The events must be objects (dicts), as enriched actions always are: unlike
    ``compile_path``, the result for anything else is undefined. One
    comprehension per depth instead of one getter call per event: about half
    the cost on the rollups' batched path, which reads each path of every
    queued action.
    """
    keys = tuple(normalize_path(path).split("."))
    if len(keys) == 1:
        (k1,) = keys

        def many1(events: Sequence[dict[str, Any]]) -> list[Any]:
            return [e.get(k1, MISSING) for e in events]

        return many1
    if len(keys) == 2:
        k1, k2 = keys

        def many2(events: Sequence[dict[str, Any]]) -> list[Any]:
            return [
                v.get(k2, MISSING) if (v := e.get(k1)).__class__ is dict or isinstance(v, dict) else MISSING
                for e in events
            ]

        return many2
    if len(keys) == 3:
        k1, k2, k3 = keys

        def many3(events: Sequence[dict[str, Any]]) -> list[Any]:
            return [
                (w.get(k3, MISSING) if (w := v.get(k2)).__class__ is dict or isinstance(w, dict) else MISSING)
                if (v := e.get(k1)).__class__ is dict or isinstance(v, dict)
                else MISSING
                for e in events
            ]

        return many3
    get = compile_path(path)

    def many_n(events: Sequence[dict[str, Any]]) -> list[Any]:
        return list(map(get, events))

    return many_n


@lru_cache(maxsize=1024)
def compile_through_list(path: str) -> Callable[[Any], bool]:
    """Compile ``path`` into a test: does the path meet a list before its last step in ``event``?

    Only then can :func:`compile_values` find values where :func:`compile_path`
    gives :data:`MISSING` (it walks into lists of objects, the getter does not);
    without a list on the way, ``MISSING`` means no value at all. A batched
    reader uses it to skip the full walk of events that simply lack the path.
    """
    keys = tuple(normalize_path(path).split("."))[:-1]
    if not keys:
        return _no_list

    def through(event: Any) -> bool:
        value = event
        for key in keys:
            if not isinstance(value, dict):
                return False
            value = value.get(key)
            if isinstance(value, list):
                return True
        return False

    return through


def _no_list(event: Any) -> bool:
    return False


def _flatten(value: Any, keys: tuple[str, ...], out: list[Any]) -> None:
    """Append every value reached by ``keys`` from ``value``, walking into lists."""
    for index, key in enumerate(keys):
        if isinstance(value, list):
            rest = keys[index:]
            for item in value:
                _flatten(item, rest, out)
            return
        if not isinstance(value, dict):
            return
        value = value.get(key)
    _extend(value, out)


def _extend(value: Any, out: list[Any]) -> None:
    if isinstance(value, list):
        for item in value:
            _extend(item, out)
    elif value is not None:
        out.append(value)


@lru_cache(maxsize=1024)
def compile_values(path: str) -> Callable[[Any], list[Any]]:
    """Compile ``path`` into a function returning the list of values a facet sees.

    Missing and ``null`` give ``[]``; a scalar gives ``[scalar]``; a list gives
    its elements (nested lists flattened); lists of objects on the way are
    walked into, one value per object.
    """
    keys = tuple(normalize_path(path).split("."))
    get = compile_path(path)

    def values(event: Any) -> list[Any]:
        value = get(event)
        # Fast path: a plain scalar reached through objects only.
        if value is MISSING:
            if not isinstance(event, dict):
                return []
            out: list[Any] = []
            _flatten(event, keys, out)  # perhaps a list of objects on the way
            return out
        if value is None:
            return []
        if isinstance(value, list):
            out = []
            _extend(value, out)
            return out
        return [value]

    return values


def compile_projection(paths: Sequence[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Compile ``paths`` into a function that copies from an event only what they can read.

    The copy holds new objects along the paths and the event's own values where
    a path ends or meets anything but an object (a list, walked into by
    :func:`compile_values`, is kept whole), so that every reader of these
    paths (:func:`compile_path`, :func:`compile_values`, :func:`compile_many`,
    :func:`compile_through_list`) finds in it exactly what it finds in the event.
    A path that is the start of another keeps its whole value.

    The rollups hold their queued actions as such copies: the rest of the action
    is freed as soon as it is sent, while it is still in the CPU caches.
    """
    tree: dict[str, Any] = {}
    for path in paths:
        *steps, last = normalize_path(path).split(".")
        node = tree
        for step in steps:
            child = node.setdefault(step, {})
            if child is None:  # a shorter path keeps this whole value already
                break
            node = child
        else:
            node[last] = None  # keep the value whole, whatever longer paths wanted under it
    return _projector(tree)


#: Levels of a projection written out in one function; deeper subtrees get functions of their own
#: (Python's parser allows 100 levels of indentation, two per level here).
_INLINE_LEVELS = 8


#: Numbers the generated projections, so that each has a file name of its own in tracebacks.
_PROJECTIONS = itertools.count(1)


def _projector(tree: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The copier of ``tree`` (key -> subtree, None: keep the value whole) as straight-line code.

    Written out as Python source and compiled once: one ``get`` and one store
    per key, with no loop over the tree and, for the first eight levels, no
    call per level. Every action the rollups take is copied, and closures
    looping over each level's keys take 1.4 to 1.55 times as long: up to 1 %
    of a rollup worker's CPU per action (bench/projection.py).

    The source is registered with ``linecache`` under the function's file name
    (``<projection N>``), so tracebacks through it show its lines.
    """
    namespace: dict[str, Any] = {"MISSING": MISSING}
    lines = ["def project(o0):"]
    _project_lines(tree, 0, lines, "    ", namespace)
    lines.append("    return r0")
    source = "\n".join(lines) + "\n"
    filename = f"<projection {next(_PROJECTIONS)}>"
    # Safe to run: the keys are path segments (letters, digits, _ and -), written with repr().
    exec(compile(source, filename, "exec"), namespace)
    # No modification time: linecache.checkcache keeps such entries (they have no file to check).
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    project: Callable[[dict[str, Any]], dict[str, Any]] = namespace["project"]
    return project


def _project_lines(
    tree: dict[str, Any], depth: int, lines: list[str], pad: str, namespace: dict[str, Any]
) -> None:
    """Lines that copy what ``tree`` keeps of the object ``o<depth>`` into a new ``r<depth>``."""
    lines.append(f"{pad}r{depth} = {{}}")
    for key, sub in tree.items():
        lines.append(f"{pad}v = o{depth}.get({key!r}, MISSING)")
        lines.append(f"{pad}if v is not MISSING:")
        if sub is not None:
            # An object is copied along the subtree; anything else (a list, a value) is kept as it is.
            lines.append(f"{pad}    if isinstance(v, dict):")
            if depth + 1 < _INLINE_LEVELS:
                lines.append(f"{pad}        o{depth + 1} = v")
                _project_lines(sub, depth + 1, lines, pad + "        ", namespace)
                lines.append(f"{pad}        v = r{depth + 1}")
            else:
                name = f"deeper{len(namespace)}"
                namespace[name] = _projector(sub)
                lines.append(f"{pad}        v = {name}(v)")
        lines.append(f"{pad}    r{depth}[{key!r}] = v")


def values_at(event: Any, path: str) -> list[Any]:
    """The values of ``path`` in ``event``: each list element counts, ``null`` and missing give ``[]``."""
    return compile_values(path)(event)
