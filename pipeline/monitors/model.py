"""What evaluation works with: a resolved monitor, its states and its groups.

These are plain classes with no YAML or pydantic in them, so that the
evaluator's inner loop reads attributes of slotted dataclasses (25,000 groups
per cycle are evaluated in a few tens of milliseconds) and so that the query
side can build monitors in tests without a config file.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pipeline.query.filter import Filter, parse_filter

#: A group of a rollup: ``(("geo.country", "France"),)``, in the rollup's group_by order;
#: ``()`` is the single group of a monitor evaluated over all groups (or of a rollup without
#: group_by). A tuple so that it can key a dict; :func:`group_object` turns it into JSON.
Group = tuple[tuple[str, Any], ...]

OVERALL: Group = ()


class Status(StrEnum):
    """The state of one monitor for one group."""

    OK = "OK"
    WARN = "WARN"
    ALERT = "ALERT"
    NO_DATA = "NO_DATA"


#: Comparator -> "the value breaches the threshold".
BREACHES: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

#: Statuses that renotify while they last (Datadog's default: alert and no data).
RENOTIFIED = frozenset({Status.ALERT, Status.NO_DATA})


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where a monitor's events are POSTed, how long one attempt may take, how often to retry."""

    url: str
    timeout_s: float = 10.0
    retries: int = 3

    @property
    def shown_url(self) -> str:
        """The URL as logs and messages show it: see :func:`redact_url`."""
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """``url`` without its credentials: a ``user:password@`` password and query values become ``****``.

    A webhook URL may carry a password or a token in its query; they must not
    reach a log or an error message. (A token in the path cannot be told from
    a path and is kept.)
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:****@{host}" if ":" in userinfo else f"****@{host}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pairs = (p.split("=", 1)[0] + ("=****" if "=" in p else "") for p in query.split("&"))
        path = f"{path}?{'&'.join(pairs)}{hash_}{fragment}"
    return f"{scheme}://{authority}{slash}{path}"


@dataclass(frozen=True, slots=True)
class Monitor:
    """A monitor as the evaluator uses it; built from the YAML by :mod:`pipeline.monitors.config`.

    Durations are milliseconds. The recovery thresholds default to the thresholds
    themselves (no hysteresis). ``step_ms`` is the rollup's smallest interval: the
    evaluation window ends on a multiple of it, so that the query can answer exactly.
    """

    name: str
    rollup: str
    aggregation: str
    comparator: str
    alert: float
    window_ms: int
    warn: float | None = None
    alert_recovery: float | None = None
    warn_recovery: float | None = None
    filter: Filter = field(default_factory=lambda: parse_filter(""))
    multi: bool = True
    group_by: tuple[str, ...] = ()
    step_ms: int = 60_000
    delay_ms: int = 0
    no_data_ms: int | None = None
    renotify_ms: int | None = None
    webhook: Webhook | None = None
    message: str = ""

    def evaluation_range(self, now_ms: int) -> tuple[int, int]:
        """``(start_ms, end_ms)`` of the window evaluated at ``now_ms``: ends ``delay`` ago, aligned down."""
        end = (now_ms - self.delay_ms) // self.step_ms * self.step_ms
        return end - self.window_ms, end

    def thresholds(self) -> dict[str, Any]:
        """The thresholds as events and states carry them (unset ones omitted)."""
        out: dict[str, Any] = {"comparator": self.comparator, "alert": self.alert}
        for key in ("warn", "alert_recovery", "warn_recovery"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def query(self) -> dict[str, Any]:
        """The query as events carry it: rollup, aggregation, filter, per group or overall."""
        return {
            "rollup": self.rollup,
            "aggregation": self.aggregation,
            "filter": self.filter.text,
            "multi": self.multi,
        }

    def selects(self, group: Group) -> bool:
        """Whether the monitor's filter keeps ``group`` (what a Source applies before answering)."""
        return self.filter.matches(group_event(group))

    def accepts(self, group: Group) -> bool:
        """Whether this monitor evaluates ``group``, by shape and filter (restored states may be stale)."""
        if not self.multi:
            return group == OVERALL
        return tuple(path for path, _ in group) == self.group_by and self.selects(group)


def group_object(group: Group) -> dict[str, Any]:
    """``{"geo.country": "France"}`` from a group (``{}`` for the overall group)."""
    return dict(group)


def group_event(group: Group) -> dict[str, Any]:
    """The group as an event the filter can read: ``{"geo": {"country": "France"}}``."""
    event: dict[str, Any] = {}
    for path, value in group:
        node = event
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return event


def group_from_object(obj: dict[str, Any], order: tuple[str, ...]) -> Group:
    """The group of a JSON group object, its attributes in ``order`` (the rollup's group_by)."""
    rank = {path: index for index, path in enumerate(order)}
    return tuple(sorted(obj.items(), key=lambda item: rank.get(item[0], len(rank))))
