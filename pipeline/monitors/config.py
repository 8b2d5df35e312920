"""Monitors declared in the ``monitors:`` section of the rollup config file.

A monitor watches one aggregation of one rollup over a rolling window and
compares it with thresholds, per group (Datadog's multi alert) or over all
groups. It is validated against the parsed rollup config, so that a monitor
on an aggregation its rollup lacks is refused at ``rum-pipeline config check``.
Every error is reported at once, each naming the monitor, the key and, when
the config came as YAML text, its line and column::

    monitors[0] (cart_value_high).query.aggregation: 'p42' ... (line 31, column 7)
    monitors[1] (x).thresholds.warn: 120 is beyond alert 100 for '>' (line 40, column 7)

The example and every key are in docs/monitors.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import ConfigError
from pipeline.monitors.model import Monitor, Webhook, redact_url
from pipeline.query.filter import parse_filter
from pipeline.rollups.config import (
    MONITORS_KEY,
    Aggregation,
    CompiledFilter,
    RollupConfig,
    RollupSpec,
    format_duration,
    parse_duration,
)

MIN_WINDOW, MAX_WINDOW = 5 * 60, 48 * 3600
Loc = tuple[int | str, ...]


class MonitorConfigError(ConfigError):
    """The monitors section is invalid; ``errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        where = f" ({source})" if source else ""
        super().__init__(f"invalid monitors config{where}:\n" + "\n".join(f"  {e}" for e in errors))
        self.errors = tuple(errors)


def _bounded(low: int, high: int, span: str | None = None) -> Any:
    """A duration validator: seconds between ``low`` and ``high``, both included."""

    def check(value: Any) -> int:
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            limits = span or f"{format_duration(low)} to {format_duration(high)}"
            raise ValueError(f"{value!r} is outside {limits}")
        return seconds

    return check


def _url(value: Any) -> str:
    """An absolute http(s) URL with a host; the checks are syntactic (nothing is contacted)."""
    if not isinstance(value, str):
        raise ValueError(f"a URL must be a string, got {type(value).__name__}")
    if value != value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"bad URL {redact_url(value)!r}: contains spaces")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        scheme = parts.scheme or "none"
        raise ValueError(f"bad URL {redact_url(value)!r}: the scheme must be http or https, not {scheme!r}")
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        raise ValueError(f"bad URL {redact_url(value)!r}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"bad URL {redact_url(value)!r}: no host")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class QuerySpec(_Frozen):
    """What a monitor reads: one aggregation of one rollup, optionally for some groups only."""

    rollup: str = Field(description="A rollup of the same file.")
    aggregation: Aggregation = Field(description="One of that rollup's aggregations, e.g. avg, p95.")
    filter: CompiledFilter = Field(
        default_factory=lambda: parse_filter(""),
        description="Search syntax over the rollup's group_by attributes; empty = every group.",
    )
    multi: bool = Field(True, description="True: one state per group (multi alert); False: one overall.")


class ThresholdsSpec(_Frozen):
    """Alert and warn thresholds; the recovery ones make a state stick until the value clears them."""

    alert: float = Field(allow_inf_nan=False, description="The value breaches it -> ALERT.")
    warn: float | None = Field(
        None, allow_inf_nan=False, description="The value breaches it (but not alert) -> WARN."
    )
    alert_recovery: float | None = Field(
        None, allow_inf_nan=False, description="ALERT lasts while the value breaches it."
    )
    warn_recovery: float | None = Field(
        None, allow_inf_nan=False, description="WARN lasts while the value breaches it."
    )


class WebhookSpec(_Frozen):
    """Where to POST the monitor's events as JSON."""

    url: Annotated[str, BeforeValidator(_url)] = Field(description="http:// or https:// URL.")
    timeout: Annotated[int, BeforeValidator(_bounded(1, 60))] = Field(10, description="Per attempt, 1s-60s.")
    retries: int = Field(3, ge=0, le=10, description="Attempts after the first, with doubling backoff.")


class MonitorSpec(_Frozen):
    """One monitor as written in YAML."""

    name: str = Field(description="Unique name, [a-z0-9_]+.")
    query: QuerySpec
    window: Annotated[int, BeforeValidator(_bounded(MIN_WINDOW, MAX_WINDOW, "5m to 48h"))] = Field(
        description="Rolling evaluation window, 5m to 48h."
    )
    comparator: Literal[">", ">=", "<", "<="] = Field(description="How the value is compared.")
    thresholds: ThresholdsSpec
    no_data: Annotated[int, BeforeValidator(_bounded(60, 7 * 86400))] | None = Field(
        None, description="NO_DATA after this long without data; absent: no data keeps the state."
    )
    evaluation_delay: Annotated[int, BeforeValidator(_bounded(0, 86400))] = Field(
        0, description="Evaluate the window that ended this long ago, for late data."
    )
    renotify: Annotated[int, BeforeValidator(_bounded(60, 7 * 86400))] | None = Field(
        None, description="Repeat ALERT and NO_DATA notifications this often while they last."
    )
    webhook: WebhookSpec | None = None
    message: str = Field("", max_length=4000, description="Free text sent with every event.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_]{1,64}", value):
            raise ValueError(f"bad name {value!r}: use 1 to 64 of a-z, 0-9 and _")
        return value


def _threshold_errors(comparator: str, t: ThresholdsSpec) -> list[tuple[Loc, str]]:
    """Thresholds that contradict each other under the comparator."""
    above = comparator in (">", ">=")
    word = "below" if above else "above"
    errors: list[tuple[Loc, str]] = []

    def before(low: float, high: float) -> bool:  # low is strictly on the quiet side of high
        return low < high if above else low > high

    if t.warn is not None and not before(t.warn, t.alert):
        errors.append(
            (("thresholds", "warn"), f"{t.warn:g} is beyond alert {t.alert:g} for {comparator!r}: "
             f"warn must be {word} alert")
        )  # fmt: skip
    for key, limit, name in (("alert_recovery", t.alert, "alert"), ("warn_recovery", t.warn, "warn")):
        value = getattr(t, key)
        if value is None:
            continue
        if limit is None:
            errors.append((("thresholds", key), f"needs a {name} threshold"))
        elif not before(value, limit):
            errors.append(
                (("thresholds", key), f"{value:g} must be {word} {name} {limit:g} for {comparator!r}")
            )
    return errors


def _query_errors(
    query: QuerySpec, window: int | None, rollups: Mapping[str, RollupSpec]
) -> list[tuple[Loc, str]]:
    """The monitor's query against its rollup: it exists, has the aggregation and the filtered attributes."""
    rollup = rollups.get(query.rollup)
    if rollup is None:
        known = ", ".join(rollups) or "none"
        return [(("query", "rollup"), f"unknown rollup {query.rollup!r} (rollups: {known})")]
    errors: list[tuple[Loc, str]] = []
    names = [a.name for a in rollup.aggregations]
    if query.aggregation.name not in names:
        errors.append(
            (
                ("query", "aggregation"),
                f"rollup {rollup.name!r} lacks {query.aggregation.name!r} (it has: {', '.join(names)})",
            )
        )
    outside = [p for p in query.filter.paths if p not in rollup.group_by]
    if outside:
        grouped = ", ".join(rollup.group_by) or "none"
        errors.append(
            (
                ("query", "filter"),
                f"{', '.join(outside)} not in the group_by of rollup {rollup.name!r} ({grouped}); "
                "a monitor filters groups, not events",
            )
        )
    step = min(rollup.intervals)
    if window is not None and window % step:
        errors.append(
            (
                ("window",),
                f"{format_duration(window)} is not a multiple of rollup {rollup.name!r}'s smallest "
                f"interval ({format_duration(step)})",
            )
        )
    return errors


def _valid(check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)`` (a model's ``model_validate`` or a field's validator), or None when invalid."""
    try:
        return check(value)
    except ValueError:  # pydantic's ValidationError is a ValueError
        return None


def _partial_checks(raw: Any, rollups: Mapping[str, RollupSpec]) -> list[tuple[Loc, str]]:
    """The cross-key checks on the parts of an invalid monitor that are valid by themselves.

    So that a first run of ``config check`` reports a bad aggregation and
    contradictory thresholds along with, say, a misspelt key.
    """
    if not isinstance(raw, Mapping):
        return []
    errors: list[tuple[Loc, str]] = []
    thresholds = _valid(ThresholdsSpec.model_validate, raw.get("thresholds"))
    if thresholds is not None and raw.get("comparator") in (">", ">=", "<", "<="):
        errors += _threshold_errors(raw["comparator"], thresholds)
    query = _valid(QuerySpec.model_validate, raw.get("query"))
    if query is not None:
        window = _valid(_bounded(MIN_WINDOW, MAX_WINDOW), raw.get("window"))
        errors += _query_errors(query, window, rollups)
    return errors


def _resolve(spec: MonitorSpec, rollup: RollupSpec) -> Monitor:
    t, hook = spec.thresholds, spec.webhook
    return Monitor(
        name=spec.name,
        rollup=rollup.name,
        aggregation=spec.query.aggregation.name,
        comparator=spec.comparator,
        alert=t.alert,
        warn=t.warn,
        alert_recovery=t.alert_recovery,
        warn_recovery=t.warn_recovery,
        filter=spec.query.filter,
        multi=spec.query.multi,
        group_by=rollup.group_by,
        window_ms=spec.window * 1000,
        step_ms=min(rollup.intervals) * 1000,
        delay_ms=spec.evaluation_delay * 1000,
        no_data_ms=None if spec.no_data is None else spec.no_data * 1000,
        renotify_ms=None if spec.renotify is None else spec.renotify * 1000,
        webhook=None if hook is None else Webhook(hook.url, float(hook.timeout), hook.retries),
        message=spec.message,
    )


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {type(err.get('input')).__name__}"
    return str(err["msg"])


def _mark(node: yaml.Node | None, loc: Loc) -> str:
    """`` (line L, column C)`` of the YAML node at ``loc`` (its key for a mapping entry), or ``""``."""
    mark = None if node is None else node.start_mark
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entry = next(((k, v) for k, v in node.value if k.value == part), None)
            if entry is None:
                break  # a missing key: point at the mapping that lacks it
            mark, node = entry[0].start_mark, entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"


def _section(source: str | Mapping[str, Any]) -> tuple[Any, yaml.Node | None]:
    """The raw monitors section and, from YAML text, its node (for line numbers)."""
    if not isinstance(source, str):
        return source.get(MONITORS_KEY), None
    root = yaml.compose(source)
    data = yaml.safe_load(source)
    node = None
    if isinstance(root, yaml.MappingNode):
        node = next((v for k, v in root.value if k.value == MONITORS_KEY), None)
    return (data.get(MONITORS_KEY) if isinstance(data, Mapping) else None), node


def parse_monitors(
    source: str | Mapping[str, Any], rollups: RollupConfig, origin: str | None = None
) -> tuple[Monitor, ...]:
    """The monitors of a config (YAML text or a mapping), checked against its parsed ``rollups``.

    Raises :class:`MonitorConfigError` naming every error. A config without a
    ``monitors`` key has no monitors.
    """
    try:
        section, node = _section(source)
    except yaml.YAMLError as exc:
        raise MonitorConfigError([f"not valid YAML: {exc}"], origin) from None
    if section is None:
        return ()
    if not isinstance(section, Sequence) or isinstance(section, str):
        raise MonitorConfigError(
            [f"{MONITORS_KEY}: expected a list, got {type(section).__name__}{_mark(node, ())}"], origin
        )
    by_name = {r.name: r for r in rollups.rollups}
    errors: list[str] = []
    monitors: list[Monitor] = []
    first: dict[str, int] = {}
    for index, raw in enumerate(section):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        label = f"{MONITORS_KEY}[{index}]" + (f" ({name})" if isinstance(name, str) else "")
        problems: list[tuple[Loc, str]] = []
        if isinstance(name, str) and name in first:
            problems.append((("name",), f"duplicate name (also {MONITORS_KEY}[{first[name]}])"))
        if isinstance(name, str):
            first.setdefault(name, index)
        try:
            spec = MonitorSpec.model_validate(raw)
        except ValidationError as exc:
            problems += [(tuple(e["loc"]), _message(e)) for e in exc.errors()]
            problems += _partial_checks(raw, by_name)
        else:
            problems += _threshold_errors(spec.comparator, spec.thresholds)
            problems += _query_errors(spec.query, spec.window, by_name)
            if not problems:
                monitors.append(_resolve(spec, by_name[spec.query.rollup]))
        for loc, message in problems:
            key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
            where = _mark(node, (index, *loc))
            errors.extend(f"{label}{key}: {line}{where}" for line in message.splitlines())
    if errors:
        raise MonitorConfigError(errors, origin)
    return tuple(monitors)


def load_monitors(path: str | Path, rollups: RollupConfig) -> tuple[Monitor, ...]:
    """The monitors of the config file at ``path``, whose rollups were parsed into ``rollups``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MonitorConfigError([f"cannot read {path}: {exc.strerror}"]) from None
    return parse_monitors(text, rollups, origin=str(path))
