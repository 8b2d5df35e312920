"""GET /api/v1/monitors (every monitor with its states and the recent events) and GET /metrics.

Every monitor of the config is listed, whichever ``serve`` instance evaluates
it: states come from the compacted ``rum.monitors.state`` topic and events from
``rum.monitors.events`` (:class:`~pipeline.monitors.board.StateBoard`); for the
monitors this instance evaluates, its own states as of its last cycle are
used, since a state record is written only when something a restart needs
changes (the value of a steady group moves without one). 503 until the
topics have been read. ``/metrics`` gives the evaluation and webhook counters
in the Prometheus text format.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from pipeline.monitors.model import Monitor, Status
from pipeline.monitors.runtime import MonitorRuntime
from pipeline.rollups.config import format_duration
from pipeline.serve.service import ViewService

#: Worst first: a monitor's status is the worst of its groups'.
SEVERITY = {Status.ALERT.value: 3, Status.NO_DATA.value: 2, Status.WARN.value: 1, Status.OK.value: 0}
#: Events listed, newest first.
EVENTS_LISTED = 50


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def describe(monitor: Monitor, states: list[dict[str, Any]]) -> dict[str, Any]:
    """One monitor of the answer: its definition, its groups' states and its worst status."""
    thresholds = {
        key: getattr(monitor, key)
        for key in ("alert", "warn", "alert_recovery", "warn_recovery")
        if getattr(monitor, key) is not None
    }
    groups = [
        {"group": s["group"], "status": s["status"], "value": s["value"], "since": s["since"]}
        for s in sorted(states, key=lambda s: (-SEVERITY[s["status"]], orjson.dumps(s["group"])))
    ]
    status = groups[0]["status"] if groups else Status.OK.value
    return {
        "name": monitor.name,
        "message": monitor.message,
        "rollup": monitor.rollup,
        "aggregation": monitor.aggregation,
        "filter": monitor.filter.text or None,
        "multi": monitor.multi,
        "window": format_duration(monitor.window_ms // 1000),
        "comparator": monitor.comparator,
        "thresholds": thresholds,
        "status": status,
        "groups": groups,
    }


def answer(runtime: MonitorRuntime) -> dict[str, Any]:
    """The body of GET /api/v1/monitors."""
    board = runtime.board
    live = runtime.live_states()
    evaluated = [at for at in (board.evaluated_at, runtime.stats.recent[-1] if runtime.stats.recent else None)
                 if at is not None]  # fmt: skip
    monitors = [
        describe(monitor, live[name] if name in live else board.monitor_states(name))
        for name, monitor in runtime.monitors.items()
    ]
    return {
        "evaluated_at": max(evaluated) if evaluated else None,
        "interval_s": float(runtime.interval_s),
        "monitors": monitors,
        "events": board.events(EVENTS_LISTED),
    }


def metrics_text(runtime: MonitorRuntime) -> str:
    """The counters of evaluation and webhooks in the Prometheus text format."""
    stats, hooks = runtime.stats, runtime.notifier.stats
    lines: list[str] = []

    def counter(name: str, help_text: str, value: float, labels: str = "") -> None:
        if not labels or not any(line.startswith(f"# TYPE {name} ") for line in lines):
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} counter"])
        lines.append(f"{name}{labels} {value}")

    counter("rum_monitor_cycles_total", "Evaluation cycles run by this instance.", stats.cycles)
    counter("rum_monitor_events_total", "Monitor events written.", stats.events)
    counter("rum_monitor_state_records_total", "Monitor state records written.", stats.states)
    counter("rum_monitor_write_failures_total", "Cycles whose records could not be written.",
            stats.write_failures)  # fmt: skip
    lines += [
        "# HELP rum_monitor_cycle_seconds Wall time of the last evaluation cycle.",
        "# TYPE rum_monitor_cycle_seconds gauge",
        f"rum_monitor_cycle_seconds {stats.last_seconds}",
        "# HELP rum_monitor_owned Monitors this instance evaluates.",
        "# TYPE rum_monitor_owned gauge",
        f"rum_monitor_owned {len(runtime.owned_monitors())}",
    ]
    counter("rum_monitor_webhook_delivered_total", "Webhook events delivered.", hooks.delivered)
    counter("rum_monitor_webhook_attempts_total", "Webhook POST attempts.", hooks.attempts)
    counter("rum_monitor_webhook_retries_total", "Webhook attempts after a first failure.", hooks.retries)
    counter("rum_monitor_webhook_dropped_total", "Webhook events dropped (queue full).", hooks.dropped)
    counter("rum_monitor_webhook_failed_total", "Webhook events given up on, all monitors.", hooks.failed)
    for name, count in sorted(hooks.failed_by_monitor.items()):
        counter("rum_monitor_webhook_failed_by_monitor_total", "Webhook events given up on (or dropped).",
                count, f'{{monitor="{name}"}}')  # fmt: skip
    return "\n".join(lines) + "\n"


def add_routes(app: web.Application, service: ViewService) -> None:
    """Register GET /api/v1/monitors and GET /metrics."""

    async def monitors(request: web.Request) -> web.Response:
        runtime = service.monitors
        if runtime is None:  # a service without evaluation (an in-memory view): nothing to list
            return _json({"evaluated_at": None, "interval_s": 0.0, "monitors": [], "events": []})
        if not runtime.board.caught_up.is_set():
            return _json(
                {"error": "the monitor state is still being read", "lag": None},
                status=503,
                headers={"Retry-After": "2"},
            )
        return _json(answer(runtime))

    async def metrics(request: web.Request) -> web.Response:
        text = metrics_text(service.monitors) if service.monitors is not None else ""
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    app.router.add_get("/api/v1/monitors", monitors)
    app.router.add_get("/metrics", metrics)
