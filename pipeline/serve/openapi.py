"""The OpenAPI 3.1 document of the query API, with the rollups, facets and limits of this process."""

from __future__ import annotations

from typing import Any

from pipeline import __version__
from pipeline.rollups.windows import SECOND_MS, format_interval
from pipeline.view.catalog import Catalog
from pipeline.view.request import Limits


def _param(name: str, description: str, schema: dict[str, Any], where: str = "query") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


def document(catalog: Catalog, limits: Limits) -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    retention = format_interval(limits.retention_ms // SECOND_MS)
    longest = format_interval(limits.max_range_ms // SECOND_MS)
    range_params = [
        _param("last", "Rolling range ending now, e.g. 15m, 1h, 1d, 7d (default 1d).", {"type": "string"}),
        _param("from", "Range start: ISO 8601 (UTC when no zone) or epoch ms.", {"type": "string"}),
        _param("to", "Range end, exclusive (default now).", {"type": "string"}),
    ]
    error = {"$ref": "#/components/schemas/Error"}
    answers = {
        "400": {
            "description": "A parameter is wrong; `parameter` names it.",
            "content": {"application/json": {"schema": error}},
        },
        "503": {"description": "The view is still reading the topics (see Retry-After)."},
    }
    limits_text = (
        f"Limits: ranges up to {longest}, starting at most {retention} ago (older parts are clipped, "
        f"and said so); at most {limits.max_points} points per series; at most {limits.max_groups} "
        f"groups per answer (more need `top`); at most {limits.max_windows} windows merged per series."
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rum-pipeline query API",
            "version": __version__,
            "description": "Answers over the rollup and facet topics, composed from 1d, 1h and 1m windows. "
            + limits_text,
        },
        "paths": {
            "/api/v1/query": {
                "get": {
                    "summary": "Aggregations of a rollup per group over a range (optionally a series).",
                    "parameters": [
                        _param("rollup", "Rollup name.", {"type": "string", "enum": sorted(catalog.rollups)}),
                        *range_params,
                        _param(
                            "where",
                            "Group filter in the filter syntax (e.g. geo.country:France); repeat for AND.",
                            {"type": "array", "items": {"type": "string"}},
                        ),
                        _param(
                            "agg",
                            "Aggregations, comma-separated (default: all the rollup keeps).",
                            {"type": "string"},
                        ),
                        _param(
                            "every",
                            "Series bucket size, a multiple of the smallest interval.",
                            {"type": "string"},
                        ),
                        _param(
                            "top",
                            "Only the N highest groups.",
                            {"type": "integer", "minimum": 1, "maximum": limits.max_groups},
                        ),
                        _param(
                            "by",
                            "Aggregation ranking groups for top (default: the first of agg).",
                            {"type": "string"},
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "The answer.",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}
                            },
                        },
                        **answers,
                    },
                }
            },
            "/api/v1/facets/{path}": {
                "get": {
                    "summary": "The most frequent values of a facet over a range (windows of 1h and 1d).",
                    "parameters": [
                        _param(
                            "path", "Facet path.", {"type": "string", "enum": list(catalog.facets)}, "path"
                        ),
                        *range_params,
                        _param("top", "How many values (default 20).", {"type": "integer", "minimum": 1}),
                    ],
                    "responses": {"200": {"description": "Values with their counts."}, **answers},
                }
            },
            "/api/v1/rollups": {
                "get": {
                    "summary": "What can be queried: the rollups (group_by, aggregations, intervals), the "
                    "facet paths and the limits; `monitors` says whether /api/v1/monitors is served. "
                    "The explorer page at / is built from it.",
                    "responses": {"200": {"description": "The catalog."}},
                }
            },
            "/api/v1/monitors": {
                "get": {
                    "summary": "Every monitor with its current state per group, and the latest events.",
                    "description": "States come from rum.monitors.state, events from rum.monitors.events "
                    "(schemas monitor-state.v1 and monitor-event.v1), whichever serve instance "
                    "evaluates the monitor. A monitor's status is the worst of its groups' "
                    "(ALERT > NO_DATA > WARN > OK; OK without groups).",
                    "responses": {
                        "200": {
                            "description": "The monitors.",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Monitors"}}
                            },
                        },
                        "503": {"description": "The monitor state is still being read (see Retry-After)."},
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "The process works.", "responses": {"200": {"description": "ok"}}}
            },
            "/ready": {
                "get": {
                    "summary": "The view has caught up with the topics.",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not yet"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "parameter"],
                    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
                },
                "Monitors": _monitors_schema(),
                "Answer": {
                    "type": "object",
                    "required": [
                        "rollup",
                        "from",
                        "to",
                        "groups",
                        "windows",
                        "final",
                        "late",
                        "approximations",
                    ],
                    "properties": {
                        "rollup": {"type": "string"},
                        "from": {"type": "string", "format": "date-time"},
                        "to": {"type": "string", "format": "date-time"},
                        "aggregations": {"type": "array", "items": {"type": "string"}},
                        "group_by": {"type": "array", "items": {"type": "string"}},
                        "groups_total": {"type": "integer"},
                        "groups": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"group": {"type": "object"}, "values": {"type": "object"}},
                            },
                        },
                        "series": {"type": "array", "items": {"type": "object"}},
                        "windows": {
                            "type": "object",
                            "description": 'Windows used per interval, e.g. {"1h": 23, "1m": 60}.',
                            "additionalProperties": {"type": "integer"},
                        },
                        "final": {"type": "boolean", "description": "Every window used is final."},
                        "open_windows": {"type": "integer"},
                        "late": {
                            "type": "integer",
                            "description": "Late actions in the windows used (in <rollup>:late, not here).",
                        },
                        "approximations": {"type": "array", "items": {"type": "string"}},
                        "view": {"type": "object"},
                    },
                },
            }
        },
    }


def _monitors_schema() -> dict[str, Any]:
    """The body of GET /api/v1/monitors."""
    status = {"enum": ["OK", "WARN", "ALERT", "NO_DATA"]}
    group = {
        "type": "object",
        "required": ["group", "status", "value", "since"],
        "properties": {
            "group": {"type": "object", "description": 'e.g. {"geo.country": "France"}; {} overall.'},
            "status": status,
            "value": {"type": ["number", "null"]},
            "since": {"type": "integer", "description": "When the group entered its status, epoch ms."},
        },
    }
    monitor = {
        "type": "object",
        "required": [
            *("name", "rollup", "aggregation", "multi", "window"),
            *("comparator", "thresholds", "status", "groups"),
        ],
        "properties": {
            "name": {"type": "string"},
            "message": {"type": "string"},
            "rollup": {"type": "string"},
            "aggregation": {"type": "string"},
            "filter": {"type": ["string", "null"]},
            "multi": {"type": "boolean"},
            "window": {"type": "string", "description": "e.g. 15m"},
            "comparator": {"enum": [">", ">=", "<", "<="]},
            "thresholds": {
                "type": "object",
                "description": "Only those set: alert, warn, alert_recovery, warn_recovery.",
                "additionalProperties": {"type": "number"},
            },
            "status": status,
            "groups": {"type": "array", "items": group},
        },
    }
    return {
        "type": "object",
        "required": ["evaluated_at", "interval_s", "monitors", "events"],
        "properties": {
            "evaluated_at": {
                "type": ["integer", "null"],
                "description": "Epoch ms of the last evaluation cycle seen (any instance).",
            },
            "interval_s": {"type": "number", "description": "Seconds between evaluations."},
            "monitors": {"type": "array", "items": monitor},
            "events": {
                "type": "array",
                "description": "Up to 50 monitor-event.v1 records, newest first.",
                "items": {"$ref": "https://rum-pipeline.dev/schemas/monitor-event.v1.json"},
            },
        },
    }
