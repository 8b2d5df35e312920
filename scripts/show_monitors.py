"""Print the monitors of a running `rum-pipeline serve` and their latest events (used by `make run`).

    python scripts/show_monitors.py http://127.0.0.1:8081 [--wait-for NAME] [--timeout 60]

With --wait-for, waits (up to --timeout seconds) until monitor NAME has left
OK, so that what is printed shows it tripping. Exits 1 when serve does not
answer or the monitor did not trip in time (the table is printed anyway).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table


def fetch(url: str) -> dict[str, Any] | None:
    """GET /api/v1/monitors, or None while serve is not ready (503) or not answering."""
    try:
        with urllib.request.urlopen(f"{url}/api/v1/monitors", timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def clock(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def show(body: dict[str, Any], console: Console) -> None:
    """The monitors' states per group, then the latest events."""
    states = Table(title="Monitors - GET /api/v1/monitors", title_justify="left")
    for col in ("monitor", "status", "group", "value", "since", "rule"):
        states.add_column(col)
    for m in body["monitors"]:
        alert = m["thresholds"]["alert"]
        rule = f"{m['aggregation']} of {m['rollup']} over {m['window']} {m['comparator']} {alert:g}"
        groups = m["groups"] or [{"group": {}, "status": m["status"], "value": None, "since": None}]
        for g in groups[:5]:
            where = ", ".join(f"{k}={v}" for k, v in g["group"].items()) or "(all)"
            value = "-" if g["value"] is None else f"{g['value']:.2f}"
            states.add_row(m["name"], g["status"], where, value, clock(g["since"]), rule)
    console.print(states)
    events = Table(title="Latest monitor events - rum.monitors.events", title_justify="left")
    for col in ("at", "monitor", "group", "change", "value"):
        events.add_column(col)
    for e in body["events"][:10]:
        where = ", ".join(f"{k}={v}" for k, v in e["group"].items()) or "(all)"
        value = "-" if e["value"] is None else f"{e['value']:.2f}"
        events.add_row(clock(e["at"]), e["monitor"], where, f"{e['from']} -> {e['to']}", value)
    console.print(events)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--wait-for", default=None, help="a monitor to wait for until it leaves OK")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    console = Console()
    deadline = time.monotonic() + args.timeout
    body = None
    while time.monotonic() < deadline:
        body = fetch(args.url.rstrip("/"))
        if body is not None and args.wait_for is None:
            break
        if body is not None:
            status = {m["name"]: m["status"] for m in body["monitors"]}.get(args.wait_for)
            if status not in (None, "OK"):
                break
        time.sleep(1)
    if body is None:
        console.print(f"[red]serve at {args.url} did not answer within {args.timeout:g} s")
        return 1
    show(body, console)
    if args.wait_for is not None:
        status = {m["name"]: m["status"] for m in body["monitors"]}.get(args.wait_for)
        if status in (None, "OK"):
            console.print(f"[red]monitor {args.wait_for} did not trip within {args.timeout:g} s")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
