"""A query as asked (text parameters, from the CLI or the HTTP API), checked and resolved.

Parameters, the same names on the command line and in the API:

- ``rollup``: a rollup of the config;
- the range: ``last`` (``15m``, ``1h``, ``1d``, ``7d``...; rolling, ends now) or ``from``
  and ``to`` (ISO 8601, no zone = UTC, or epoch ms; ``to`` defaults to now);
- ``where``: group filters in the filter syntax (``@geo.country:France``; the ``@`` may be
  left out); several are joined with AND; only the rollup's group_by attributes can be used;
- ``agg``: comma-separated aggregations the rollup keeps (default: all of them);
- ``every``: a time series with one point per bucket of this size (a multiple of the rollup's
  smallest interval);
- ``top`` and ``by``: only the N groups ranked highest by aggregation ``by`` (default: the
  first of ``agg``).

Every error is a :class:`QueryError` naming the parameter at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.errors import PipelineError
from pipeline.query.filter import Filter, FilterSyntaxError, parse_filter
from pipeline.rollups.config import RollupConfig
from pipeline.rollups.windows import DAY_S, SECOND_MS, format_interval
from pipeline.view.ranges import RangeError, align, iso, parse_span, parse_time


class QueryError(PipelineError):
    """A query parameter is wrong; ``param`` names it (CLI exit 2, HTTP 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one query may ask for, so that none costs unbounded CPU or memory."""

    #: How far back a range may start (the view keeps no older windows).
    retention_ms: int = 8 * DAY_S * SECOND_MS
    #: Longest range.
    max_range_ms: int = 8 * DAY_S * SECOND_MS
    #: Most points of a time series (``every``).
    max_points: int = 1440
    #: Most groups in an answer; more need ``top``.
    max_groups: int = 1000
    #: Most buckets times windows merged by one query (a series of many small buckets
    #: over a long range is refused rather than run).
    max_windows: int = 50_000


@dataclass(frozen=True)
class RollupInfo:
    """What a query needs to know about a rollup: its intervals, groups and aggregations."""

    name: str
    intervals_s: tuple[int, ...]
    group_by: tuple[str, ...]
    aggregations: tuple[str, ...]
    #: How long windows accept late actions after they end (the config's ``grace``).
    grace_ms: int = 60 * SECOND_MS


def catalog_of(config: RollupConfig) -> dict[str, RollupInfo]:
    """The queryable rollups of a config."""
    return {
        r.name: RollupInfo(
            r.name,
            tuple(r.intervals),
            tuple(r.group_by),
            tuple(a.name for a in r.aggregations),
            config.grace_seconds * SECOND_MS,
        )
        for r in config.rollups
    }


@dataclass(frozen=True)
class Query:
    """A checked query: every time resolved to epoch ms."""

    rollup: RollupInfo
    start: int
    end: int
    aggregations: tuple[str, ...]
    where: Filter | None = None
    every_ms: int | None = None
    top: int | None = None
    by: str | None = None
    #: What was changed from the request to answer it (clipped to retention...).
    notes: tuple[str, ...] = field(default=())
    #: When the query was asked (ms): a window without records that may still get some is not final.
    now_ms: int | None = None


@dataclass(frozen=True)
class FacetQuery:
    """A checked facet query: the top values of a facet over a range."""

    facet: str
    start: int
    end: int
    top: int
    notes: tuple[str, ...] = ()


_BARE_TERM = re.compile(r"(^|[\s(])(-?)([A-Za-z_][\w.\-]*:)")


def parse_where(texts: Sequence[str], group_by: Sequence[str]) -> Filter | None:
    """One filter from several ``where`` texts (ANDed); attributes must be group_by paths."""
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        return None
    # ``geo.country:France`` is accepted for ``@geo.country:France``.
    joined = " ".join("(" + _BARE_TERM.sub(r"\1\2@\3", t) + ")" for t in texts)
    try:
        found = parse_filter(joined)
    except FilterSyntaxError as exc:
        raise QueryError("where", str(exc)) from None
    unknown = [p for p in found.paths if p not in group_by]
    if unknown:
        names = ", ".join(group_by) or "none"
        raise QueryError("where", f"{', '.join(unknown)} is not a group of this rollup (its groups: {names})")
    return found


def parse_range(params: Mapping[str, str | None], now_ms: int, limits: Limits) -> tuple[int, int, list[str]]:
    """``(start, end, notes)`` from ``last`` or ``from``/``to``."""
    last, since, until = params.get("last"), params.get("from"), params.get("to")
    notes: list[str] = []
    try:
        if last and (since or until):
            raise QueryError("last", "give either last or from/to, not both")
        if last:
            end = now_ms
            start = end - parse_span(last, "last")
        elif since:
            start = parse_time(since, "from")
            end = parse_time(until, "to") if until else now_ms
        elif until:
            raise QueryError("from", "to needs from (or use last)")
        else:
            end = now_ms
            start = end - DAY_S * SECOND_MS
    except RangeError as exc:
        raise QueryError(exc.param, exc.message) from None
    if start >= end:
        raise QueryError("from", f"from ({iso(start)}) must be before to ({iso(end)})")
    if end - start > limits.max_range_ms:
        raise QueryError(
            "last" if last else "from",
            f"the range is longer than the limit of {format_interval(limits.max_range_ms // SECOND_MS)}",
        )
    horizon = now_ms - limits.retention_ms
    if end <= horizon:
        raise QueryError(
            "last" if last else "to",
            f"the range ends before the retention of {format_interval(limits.retention_ms // SECOND_MS)} "
            f"({iso(horizon)}): no window that old is kept",
        )
    if start < horizon:
        notes.append(f"the range starts before the retention: answered from {iso(horizon)} only")
        start = horizon
    return start, end, notes


def _positive_int(text: str | None, param: str, limit: int) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) < 1:
        raise QueryError(param, f"{text!r} is not a positive whole number")
    if int(text) > limit:
        raise QueryError(param, f"{text} is more than the limit of {limit}")
    return int(text)


def parse_query(
    params: Mapping[str, str | None],
    where: Sequence[str],
    catalog: Mapping[str, RollupInfo],
    now_ms: int,
    limits: Limits,
) -> Query:
    """Check and resolve a rollup query; raise QueryError naming the parameter at fault."""
    name = params.get("rollup") or ""
    info = catalog.get(name)
    if info is None:
        known = ", ".join(sorted(catalog)) or "none"
        raise QueryError("rollup", f"unknown rollup {name!r} (known: {known})")
    start, end, notes = parse_range(params, now_ms, limits)
    aggs_text = params.get("agg")
    aggs = tuple(a.strip() for a in aggs_text.split(",") if a.strip()) if aggs_text else info.aggregations
    if not aggs:
        raise QueryError("agg", "name at least one aggregation")
    bad = [a for a in aggs if a not in info.aggregations]
    if bad:
        raise QueryError(
            "agg", f"{', '.join(bad)} is not kept by {name} (it keeps: {', '.join(info.aggregations)})"
        )
    smallest = min(info.intervals_s) * SECOND_MS
    every_ms = None
    if params.get("every"):
        try:
            every_ms = parse_span(params["every"] or "", "every")
        except RangeError as exc:
            raise QueryError("every", exc.message) from None
        if every_ms % smallest:
            raise QueryError(
                "every",
                "must be a multiple of the rollup's smallest interval "
                + format_interval(smallest // SECOND_MS),
            )
        low, high = align(start, end, smallest)
        points = -(-(high - low) // every_ms)
        if points > limits.max_points:
            raise QueryError(
                "every", f"{points} points over this range, more than the limit of {limits.max_points}"
            )
    top = _positive_int(params.get("top"), "top", limits.max_groups)
    by = params.get("by") or None
    if by is not None and by not in aggs:
        raise QueryError("by", f"{by!r} is not one of the aggregations asked for ({', '.join(aggs)})")
    if by is not None and top is None:
        raise QueryError("by", "by ranks groups for top: give top too")
    return Query(
        rollup=info,
        start=start,
        end=end,
        aggregations=aggs,
        where=parse_where(where, info.group_by),
        every_ms=every_ms,
        top=top,
        by=by or (aggs[0] if top else None),
        notes=tuple(notes),
        now_ms=now_ms,
    )


def parse_facet_query(
    facet: str, params: Mapping[str, str | None], facets: Sequence[str], now_ms: int, limits: Limits
) -> FacetQuery:
    """Check and resolve a facet query (values ranked by count)."""
    if facet not in facets:
        raise QueryError("path", f"unknown facet {facet!r} (facets: {', '.join(facets) or 'none'})")
    start, end, notes = parse_range(params, now_ms, limits)
    top = _positive_int(params.get("top"), "top", limits.max_groups) or 20
    return FacetQuery(facet, start, end, top, tuple(notes))
