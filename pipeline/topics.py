"""Every topic of the pipeline, in one place: names, partitioning and configs."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.settings import Settings

RAW = "rum.actions.raw"
ENRICHED = "rum.actions.enriched"
BAD = "rum.actions.bad"
FACETS = "rum.facets.index"
ROLLUPS = "rum.measures.rollup"
LATE = "rum.actions.late"
#: RUM events other than custom actions (views, resources, errors, clicks...) received by the intake.
OTHER = "rum.events.other"
#: Rollup state of each raw partition (same partition numbers as the raw topic).
STATE = "rum.internal.rollup-state"
#: Per raw partition (same partition numbers): the action ids seen (deduplication) and the
#: offset the partition's last transaction committed.
DEDUPE = "rum.internal.dedupe-state"
#: Partial aggregates on their way to the merge stage, routed by rollup window.
PARTIALS = "rum.internal.rollup-partials"
#: Ledger of recovered bad rows (rum-pipeline recover), keyed by the rejected input's position.
RECOVERED = "rum.internal.recovered"
#: Monitor transitions and renotifications (monitor-event.v1), keyed by the monitor's name.
MONITOR_EVENTS = "rum.monitors.events"
#: Current state per monitor and group (monitor-state.v1); what evaluation restores from.
MONITOR_STATE = "rum.monitors.state"

# Raw actions may be larger than Kafka's 1 MiB default: they must still reach
# the worker so that they become bad rows of kind "size" instead of being
# refused at produce time. Bad rows carry the original payload, so they need
# the same room (plus the base64 overhead).
LARGE_MESSAGE_BYTES = 8 * 1024 * 1024
_LARGE = str(LARGE_MESSAGE_BYTES)
#: The bad topic's ``max.message.bytes``: every bad row (with its Kafka key)
#: is built to fit it, truncating the original payload when it must.
BAD_MAX_MESSAGE_BYTES = LARGE_MESSAGE_BYTES
#: The enriched topic's ``max.message.bytes``, set explicitly so that a
#: cluster left at Kafka's 1 MB default still takes the largest enriched
#: action (a raw action at the size limit plus what enrichment adds, which is
#: bounded: see docs/enrichment.md).
ENRICHED_MAX_MESSAGE_BYTES = LARGE_MESSAGE_BYTES


@dataclass(frozen=True)
class TopicSpec:
    """A topic the pipeline creates: its default name, partitions and configs."""

    name: str
    description: str
    compacted: bool = False
    configs: dict[str, str] = field(default_factory=dict)

    def kafka_configs(self) -> dict[str, str]:
        """Topic-level configs to create it with."""
        configs = dict(self.configs)
        if self.compacted:
            configs["cleanup.policy"] = "compact"
        return configs


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(RAW, "raw actions from the intake and direct producers", configs={"max.message.bytes": _LARGE}),
    TopicSpec(
        ENRICHED,
        "validated actions with page, geo and browser context",
        configs={"max.message.bytes": str(ENRICHED_MAX_MESSAGE_BYTES)},
    ),
    TopicSpec(
        BAD,
        "rejected inputs as typed bad rows with their original bytes",
        configs={"max.message.bytes": _LARGE},
    ),
    TopicSpec(FACETS, "facet index upserts: distinct values with counts per window", compacted=True),
    TopicSpec(ROLLUPS, "measure rollup upserts per rollup, group and window", compacted=True),
    TopicSpec(
        LATE,
        "actions too late (or too far in the future) for a window, with the reasons",
        # Late records carry a whole enriched action.
        configs={"max.message.bytes": str(ENRICHED_MAX_MESSAGE_BYTES)},
    ),
    TopicSpec(
        OTHER,
        "intake: RUM events other than custom actions, kept as received (plus intake stamps)",
        configs={"max.message.bytes": _LARGE},
    ),
    TopicSpec(STATE, "internal: rollup state changelog, partitioned like the raw topic", compacted=True),
    TopicSpec(
        DEDUPE, "internal: action ids seen per raw partition, and its committed offset", compacted=True
    ),
    TopicSpec(
        PARTIALS, "internal: partial aggregates per source partition for the merge stage", compacted=True
    ),
    TopicSpec(RECOVERED, "internal: ledger of recovered bad rows, one entry per input", compacted=True),
    TopicSpec(MONITOR_EVENTS, "monitor transitions and renotifications, keyed by monitor"),
    TopicSpec(MONITOR_STATE, "current state per monitor and group; serve restores from it", compacted=True),
)


def topic_specs(settings: Settings) -> list[tuple[str, TopicSpec]]:
    """The full (prefixed) name and spec of every topic."""
    return [(settings.topic(spec.name), spec) for spec in TOPICS]
