"""The rollups and facets of a config, compiled once for the hot path (no Kafka, no state)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.query.paths import compile_many, compile_path, compile_values
from pipeline.rollups.aggregation_set import AggregationSet
from pipeline.rollups.config import RollupConfig
from pipeline.rollups.values import scalar

#: A partial's identity on the hot path: (rollup, interval seconds, window start, group).
#: Cheaper to build and hash than a RollupKey, which is made once per new partial.
SlotKey = tuple[str, int, int, tuple[tuple[str, Any], ...]]
FACET_PREFIX = "facet:"
LATE_SUFFIX = ":late"
#: The rollup that counts copies of actions seen before, per window (no group, no filter).
DUPLICATES = "pipeline:duplicates"
DEFAULT_FACET_INTERVALS = (3600, 86400)


@dataclass(frozen=True)
class CompiledRollup:
    """A rollup ready for the hot path: predicate, getters and aggregations compiled once."""

    name: str
    matches: Callable[[Any], bool]
    measure: Callable[[Any], Any] | None
    groups: tuple[tuple[str, Callable[[Any], list[Any]]], ...]
    intervals: tuple[int, ...]
    aggregations: AggregationSet
    #: Every attribute path the rollup reads (filter, measure, group_by, aggregations; a facet's
    #: path): queued actions keep only these, so a reader of any other path would find nothing.
    paths: tuple[str, ...]
    #: True when the filter selects every event (no need to evaluate it).
    always: bool = False
    #: ``measure`` for a list of events at once (optional: ``measure`` per event otherwise).
    measure_many: Callable[[Sequence[dict[str, Any]]], list[Any]] | None = None
    #: ``matches`` for a list of events at once (optional: ``matches`` per event otherwise).
    matches_many: Callable[[Sequence[dict[str, Any]]], list[bool]] | None = None

    def select(self, events: Sequence[dict[str, Any]]) -> list[bool]:
        """``matches`` of each event, in order."""
        if self.matches_many is not None:
            return self.matches_many(events)
        return [self.matches(event) for event in events]

    def group_keys(self, event: Any) -> list[tuple[tuple[str, Any], ...]]:
        """Every group the event belongs to: a list attribute gives one group per element."""
        if not self.groups:
            return [()]
        if len(self.groups) == 1:  # the common case, without the cartesian product
            path, values = self.groups[0]
            found = values(event)
            if len(found) == 1:
                return [((path, scalar(found[0])),)]
            groups: list[tuple[tuple[str, Any], ...]] = [
                ((path, v),) for v in dict.fromkeys(map(scalar, found))
            ]
            # An event without the attribute is grouped under a null value, so that it is not lost.
            return groups or [((path, None),)]
        choices = []
        for path, values in self.groups:
            found = values(event)
            choices.append([(path, v) for v in dict.fromkeys(scalar(v) for v in found)] or [(path, None)])
        return [tuple(combo) for combo in itertools.product(*choices)]


def compile_rollups(config: RollupConfig) -> list[CompiledRollup]:
    """The configured rollups plus the internal facet rollups, compiled."""
    compiled = []
    for spec in config.rollups:
        measure = compile_path(spec.measure) if spec.measure else None
        aggregations = AggregationSet.of(tuple(a.name for a in spec.aggregations))
        compiled.append(
            CompiledRollup(
                name=spec.name,
                matches=spec.filter.matches,
                measure=measure,
                groups=tuple((path, compile_values(path)) for path in spec.group_by),
                intervals=tuple(spec.intervals),
                aggregations=aggregations,
                always=not spec.filter.text.strip(),
                measure_many=compile_many(spec.measure) if spec.measure else None,
                matches_many=spec.filter.matches_many,
                paths=(
                    *spec.filter.paths,
                    *([spec.measure] if spec.measure else []),
                    *spec.group_by,
                    *aggregations.paths,
                ),
            )
        )
    # Facets are indexed per hour and per day: finer windows would multiply the
    # state by the number of distinct values for little use.
    intervals = DEFAULT_FACET_INTERVALS
    for facet in config.facets:
        aggregations = AggregationSet.of(("count", f"values({facet.path})"))
        compiled.append(
            # One partial per facet window holds the count of every value: one record per
            # window and flush instead of one per value (most of the partials otherwise).
            CompiledRollup(
                name=FACET_PREFIX + facet.path,
                matches=_always,
                measure=None,
                groups=(),
                intervals=intervals,
                aggregations=aggregations,
                always=True,
                paths=aggregations.paths,
            )
        )
    return compiled


def is_facet(rollup: str) -> bool:
    """True for the internal rollups of the facet index (their late counts are plain rollups)."""
    return rollup.startswith(FACET_PREFIX) and not rollup.endswith(LATE_SUFFIX)


def _always(event: Any) -> bool:
    return True
