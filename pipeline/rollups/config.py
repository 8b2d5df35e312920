"""The rollup config: which facets, measures and rollups the pipeline maintains.

One YAML file declares them (the "create facet / create measure" step of the
Explorer), validated once at start-up. Every error is reported at once, each
naming the rollup (index and name), the key and, for filters, the column::

    rollups[0] (cart_value_by_country).filter: unexpected ')' at column 17
    rollups[1] (x).aggregations[3]: unknown aggregation 'p42' (allowed: ...)
    facets[2]: bad path 'geo..country': empty segment

Durations (``intervals``, ``grace``, ``retention``, ``idle``) are written ``30s``, ``5m``,
``1h``, ``1d`` (or a number of seconds) and stored in seconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError
from pipeline.query.filter import Filter, FilterSyntaxError, parse_filter
from pipeline.query.paths import normalize_path
from pipeline.rollups.windows import DAY_S, UNITS, format_interval, parse_interval

MAX_INTERVAL = 7 * DAY_S
_DURATION = re.compile(r"(\d+)([smhd])")
_PERCENTILES = ("p50", "p75", "p90", "p95", "p99")
_SIMPLE = ("count", "sum", "avg", "min", "max", *_PERCENTILES)
ALLOWED_AGGREGATIONS = (*_SIMPLE, "cardinality(<path>)")
#: The top-level key of the monitors section, left to :mod:`pipeline.monitors.config`.
MONITORS_KEY = "monitors"
#: Aggregations that need no measure: they count events or distinct values of a path.
_MEASURELESS = ("count", "cardinality")


class RollupConfigError(ConfigError):
    """The rollup config is invalid; ``errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        where = f" ({source})" if source else ""
        super().__init__(f"invalid rollup config{where}:\n" + "\n".join(f"  {e}" for e in errors))
        self.errors = tuple(errors)


def parse_duration(value: Any) -> int:
    """Seconds in ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a plain number of seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"bad duration {value!r} (use e.g. 30s, 1m, 1h, 1d)")
    return int(match[1]) * UNITS[match[2]]


def format_duration(seconds: int) -> str:
    """The shortest spelling of ``seconds``: 60 -> ``1m``, 86400 -> ``1d``, 90 -> ``90s``."""
    return format_interval(seconds) if seconds > 0 else "0s"


def _interval(value: Any) -> int:
    """A tumbling window size: the rules of ``windows.parse_interval``, at most 7d."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}s"  # whole seconds, checked by the same rules
    if isinstance(value, str) and re.fullmatch(r"0+[smhd]", value):
        raise ValueError(f"bad interval {value!r}: must be positive")
    try:
        seconds = parse_interval(value)
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[-1] if "divide a day" in str(exc) else "use e.g. 30s, 1m, 1h, 1d"
        raise ValueError(f"bad interval {value!r} ({reason})") from None
    if seconds > MAX_INTERVAL:
        raise ValueError(f"bad interval {value!r}: at most 7d")
    return seconds


def _duration(limit: int) -> Any:
    def check(value: Any) -> int:
        seconds = parse_duration(value)
        if seconds > limit:
            raise ValueError(f"{value!r} is longer than {format_duration(limit)}")
        return seconds

    return check


def _filter(value: Any) -> Filter:
    if isinstance(value, Filter) or value is None:
        return value or parse_filter("")
    if not isinstance(value, str):
        raise ValueError(f"a filter must be a string, got {type(value).__name__}")
    try:
        return parse_filter(value)
    except FilterSyntaxError as exc:
        raise ValueError(str(exc)) from None


def _aggregation(value: Any) -> Any:
    if isinstance(value, (AggregationSpec, Mapping)):
        return value
    if isinstance(value, str):
        if value in _SIMPLE:
            return {"kind": value}
        match = re.fullmatch(r"cardinality\((.*)\)", value.strip())
        if match:
            try:
                return {"kind": "cardinality", "path": normalize_path(match[1].strip())}
            except ValueError as exc:
                raise ValueError(f"bad aggregation {value!r}: {exc}") from None
    raise ValueError(f"unknown aggregation {value!r} (allowed: {', '.join(ALLOWED_AGGREGATIONS)})")


def _unique(values: tuple[Any, ...], key: Any = None) -> None:
    seen: set[Any] = set()
    for value in values:
        k = key(value) if key else value
        if k in seen:
            raise ValueError(f"{k!r} appears twice")
        seen.add(k)


# PathError is a ValueError: pydantic reports it at the key, with the others.
AttributePath = Annotated[str, BeforeValidator(normalize_path)]
Interval = Annotated[int, BeforeValidator(_interval)]
CompiledFilter = Annotated[
    Filter, BeforeValidator(_filter), PlainSerializer(lambda f: f.text, return_type=str)
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class _PathSpec(_Frozen):
    path: AttributePath = Field(description="Attribute path, e.g. geo.country or context.value.")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data  # `- geo.country` is short for {path: ...}


class FacetSpec(_PathSpec):
    """An attribute whose values are indexed; a list attribute counts each element."""


class MeasureSpec(_PathSpec):
    """A numeric attribute that rollups may aggregate."""

    unit: str | None = Field(None, min_length=1, description="Unit shown to users, e.g. EUR or ms.")


class AggregationSpec(_Frozen):
    """One aggregation of a rollup: ``count``, ``avg``, ``p95``, ``cardinality(usr.id)``..."""

    kind: Literal["count", "sum", "avg", "min", "max", "p50", "p75", "p90", "p95", "p99", "cardinality"]
    path: AttributePath | None = Field(None, description="The counted attribute, for cardinality only.")

    @model_validator(mode="after")
    def _path_only_for_cardinality(self) -> AggregationSpec:
        if (self.kind == "cardinality") != (self.path is not None):
            raise ValueError(
                "cardinality needs a path, e.g. cardinality(usr.id); other aggregations take none"
            )
        return self

    @property
    def name(self) -> str:
        """The aggregation as written in the config, e.g. ``cardinality(usr.id)``."""
        return f"cardinality({self.path})" if self.kind == "cardinality" else self.kind

    @property
    def quantile(self) -> float | None:
        """0.95 for ``p95``; None for other aggregations."""
        return int(self.kind[1:]) / 100 if self.kind in _PERCENTILES else None

    @property
    def needs_measure(self) -> bool:
        """False for count and cardinality, which do not read the measure."""
        return self.kind not in _MEASURELESS


Aggregation = Annotated[
    AggregationSpec, BeforeValidator(_aggregation), PlainSerializer(lambda a: a.name, return_type=str)
]


class RollupSpec(_Frozen):
    """A rollup: the events a filter selects, grouped, aggregated per tumbling window."""

    name: str = Field(description="Unique name, [a-z0-9_]+; part of every record key.")
    filter: CompiledFilter = Field(
        default_factory=lambda: parse_filter(""), description="Explorer search syntax; empty = all events."
    )
    # Declared before `measure` so that the measure check can see the aggregations.
    aggregations: tuple[Aggregation, ...] = Field(min_length=1, description="What to compute per group.")
    measure: AttributePath | None = Field(
        None, validate_default=True, description="A declared measure; optional for count/cardinality only."
    )
    group_by: tuple[AttributePath, ...] = Field((), max_length=4, description="Up to 4 attribute paths.")
    intervals: tuple[Interval, ...] = Field(min_length=1, description="Window sizes, in seconds.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_]{1,64}", value):
            raise ValueError(f"bad name {value!r}: use 1 to 64 of a-z, 0-9 and _")
        return value

    @field_validator("aggregations", "group_by", "intervals")
    @classmethod
    def _unique_items(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        _unique(value, key=lambda item: item.name if isinstance(item, AggregationSpec) else item)
        return value

    @field_validator("measure")
    @classmethod
    def _check_measure(cls, value: str | None, info: ValidationInfo) -> str | None:
        aggregations = info.data.get("aggregations")  # absent when they were invalid
        if value is None and aggregations:
            needing = [a.name for a in aggregations if a.needs_measure]
            if needing:
                raise ValueError(
                    f"required by {', '.join(needing)} (only count and cardinality work without a measure)"
                )
        declared = (info.context or {}).get("measures")
        if value is not None and declared is not None and value not in declared:
            raise ValueError(_undeclared(value, declared))
        return value


def _undeclared(path: str, declared: Any) -> str:
    names = ", ".join(declared) or "none"
    return f"{path!r} is not a declared measure (declared: {names}); add it under measures"


class RollupConfig(_Frozen):
    """Facets, measures and rollups, plus how long windows wait for late events and stay in state."""

    model_config = ConfigDict(populate_by_name=True)

    facets: tuple[FacetSpec, ...] = Field((), description="Attributes to index.")
    measures: tuple[MeasureSpec, ...] = Field((), description="Numeric attributes rollups may aggregate.")
    rollups: tuple[RollupSpec, ...] = Field((), description="The rollups to maintain.")
    grace_seconds: Annotated[int, BeforeValidator(_duration(MAX_INTERVAL))] = Field(
        60, alias="grace", description="How long a window accepts late events after it ends."
    )
    retention_seconds: Annotated[int, BeforeValidator(_duration(365 * DAY_S))] = Field(
        2 * DAY_S, alias="retention", description="Windows that ended longer ago than this are evicted."
    )
    idle_seconds: Annotated[int, BeforeValidator(_duration(DAY_S))] = Field(
        60,
        alias="idle",
        description=(
            "A source partition without actions for this long (wall clock) moves its watermark to "
            "the wall clock minus this, so that it no longer holds windows open; 0s turns this off."
        ),
    )

    @field_validator("facets", "measures")
    @classmethod
    def _unique_paths(cls, value: tuple[FacetSpec | MeasureSpec, ...]) -> tuple[Any, ...]:
        _unique(value, key=lambda spec: spec.path)
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> RollupConfig:
        errors = _duplicate_names([r.name for r in self.rollups])
        declared = [m.path for m in self.measures]
        for index, rollup in enumerate(self.rollups):
            if rollup.measure is not None and rollup.measure not in declared:
                errors.append(
                    f"rollups[{index}] ({rollup.name}).measure: {_undeclared(rollup.measure, declared)}"
                )
        longest = max((i for r in self.rollups for i in r.intervals), default=0)
        if self.retention_seconds < longest + self.grace_seconds:
            errors.append(
                f"retention: {format_duration(self.retention_seconds)} is shorter than the longest "
                f"interval ({format_duration(longest)}) plus grace: windows would be evicted before closing"
            )
        if errors:
            raise ValueError("\n".join(errors))
        return self


def _duplicate_names(names: list[Any]) -> list[str]:
    first: dict[Any, int] = {}
    errors = []
    for index, name in enumerate(names):
        if isinstance(name, str) and name in first:
            errors.append(f"rollups[{index}] ({name}).name: duplicate name (also rollups[{first[name]}])")
        first.setdefault(name, index)
    return errors


def _label(loc: tuple[int | str, ...], data: Any) -> str:
    """``rollups[0] (name).filter`` from a pydantic location and the raw input."""
    label, node = "", data
    for key in loc:
        if isinstance(key, int):
            label += f"[{key}]"
            node = node[key] if isinstance(node, (list, tuple)) and -len(node) <= key < len(node) else None
            name = node.get("name") if isinstance(node, dict) and label.startswith("rollups") else None
            if isinstance(name, str) and label.count("[") == 1:
                label += f" ({name})"
        elif isinstance(node, str) and label:
            break  # the item was written as a bare string (facets: [geo.country]): no sub-key to name
        else:
            label += f".{key}" if label else key
            node = node.get(key) if isinstance(node, dict) else None
    return label


def _messages(exc: ValidationError, data: Any) -> list[str]:
    out: list[str] = []
    errors = exc.errors()
    item_locs = {tuple(e["loc"][:-1]) for e in errors if e["loc"] and isinstance(e["loc"][-1], int)}
    for err in errors:
        if err["type"] == "too_short" and tuple(err["loc"]) in item_locs:
            continue  # a list left short only because its bad items were reported already
        kind, got = err["type"], type(err.get("input")).__name__
        if kind == "value_error":
            message = str(err["ctx"]["error"])
        elif kind == "missing":
            message = "required"
        elif kind == "extra_forbidden":
            message = "unknown key"
        elif kind in ("tuple_type", "list_type"):
            message = f"expected a list, got {got}"
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            message = f"expected a mapping, got {got}"
        else:
            message = err["msg"]
        label = _label(tuple(err["loc"]), data)
        out.extend(f"{label}: {line}" if label else line for line in message.splitlines())
    return out


def parse_rollup_config(source: str | Mapping[str, Any], origin: str | None = None) -> RollupConfig:
    """Validate a config given as YAML text or a mapping; raise RollupConfigError naming every error."""
    if isinstance(source, str):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise RollupConfigError([f"not valid YAML: {exc}"], origin) from None
    else:
        data = source
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise RollupConfigError([f"expected a mapping at the top, got {type(data).__name__}"], origin)
    data = dict(data)
    # The monitors section shares the file but is validated by pipeline.monitors.config,
    # which needs the parsed rollups to check each monitor's rollup and aggregation.
    data.pop(MONITORS_KEY, None)
    rollups = data.get("rollups")
    rollups = rollups if isinstance(rollups, (list, tuple)) else []
    names = [r.get("name") if isinstance(r, Mapping) else None for r in rollups]
    # Checked on the raw input too, so that it is reported along with every other error.
    duplicates = _duplicate_names(names)
    measures = data.get("measures")
    measures = measures if isinstance(measures, (list, tuple)) else []
    declared = [m.get("path") if isinstance(m, Mapping) else m for m in measures]
    declared = [p.removeprefix("@") for p in declared if isinstance(p, str)]
    errors: list[str] = []
    try:
        config = RollupConfig.model_validate(data, context={"measures": declared})
    except ValidationError as exc:
        errors = _messages(exc, data)
    errors += [d for d in duplicates if d not in errors]
    if errors:
        raise RollupConfigError(errors, origin)
    return config


def load_rollup_config(path: str | Path) -> RollupConfig:
    """Read and validate the rollup config file at ``path`` (YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RollupConfigError([f"cannot read {path}: {exc.strerror}"]) from None
    return parse_rollup_config(text, origin=str(path))


def default_config_path() -> Path:
    """The default rollup config shipped with the project: ``config/rollups.yaml``."""
    return Path(__file__).resolve().parents[2] / "config" / "rollups.yaml"
