"""`rum-pipeline query`, `facets` and `serve`: the downstream commands (registered by pipeline.cli).

`query` and `facets` are one-shot answers from the rollup and facet topics:
each run reads the compacted topics from the beginning into a view (with a
progress line on stderr), answers, and exits. A wrong argument exits with
status 2 and names it; an unreachable Kafka exits with status 1. `serve`
keeps the view live behind the HTTP API (pipeline.serve).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from pipeline.clock import now_ms
from pipeline.errors import PipelineError
from pipeline.settings import Settings
from pipeline.view.catalog import Catalog, load_catalog
from pipeline.view.query import run_facet_query, run_query
from pipeline.view.reader import Progress, load_view
from pipeline.view.render import as_csv, as_json, print_table
from pipeline.view.request import Limits, QueryError, parse_facet_query, parse_query
from pipeline.view.store import ViewStore

#: CLI option of each query parameter, to name it in errors.
OPTION = {
    "rollup": "ROLLUP",
    "path": "PATH",
    "last": "--last",
    "from": "--from",
    "to": "--to",
    "where": "--where",
    "agg": "--agg",
    "every": "--every",
    "top": "--top",
    "by": "--by",
}


def range_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--last, --from, --to and --timeout, shared by both commands."""
    for option in reversed(
        [
            click.option("--last", help="Rolling range ending now: 15m, 1h, 1d, 7d... (default 1d)."),
            click.option("--from", "since", help="Range start: ISO 8601 (UTC when no zone) or epoch ms."),
            click.option("--to", "until", help="Range end, exclusive (default: now)."),
            click.option(
                "--timeout",
                type=click.FloatRange(min=1),
                default=120.0,
                show_default=True,
                help="Seconds to wait for the view to catch up with the topics.",
            ),
        ]
    ):
        func = option(func)
    return func


def _bad(exc: QueryError) -> click.BadParameter:
    return click.BadParameter(exc.message, param_hint=OPTION.get(exc.param, exc.param))


def _catalog(settings: Settings) -> Catalog:
    try:
        return load_catalog(settings)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None


def load(settings: Settings, timeout: float, limits: Limits, quiet: bool) -> tuple[ViewStore, Progress]:
    """Read the topics into a new store, with a progress line on stderr unless ``quiet``."""
    store = ViewStore(retention_ms=limits.retention_ms)
    console = Console(stderr=True)
    show = not quiet and console.is_terminal
    status = console.status("reading the rollup topics...") if show else None

    def progress(p: Progress) -> None:
        if status is not None:
            lag = "?" if p.lag is None else f"{p.lag:,}"
            status.update(f"reading the rollup topics: {p.records:,} records, {lag} behind")

    started = time.monotonic()
    try:
        if status is not None:
            status.start()
        found = asyncio.run(load_view(settings, store, timeout, progress))
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # aiokafka's connection errors name no setting: say which one
        raise click.ClickException(
            f"cannot read the rollup topics from {settings.kafka.bootstrap} (RUM_KAFKA_BOOTSTRAP): {exc}"
        ) from None
    finally:
        if status is not None:
            status.stop()
    if not found.caught_up:
        console.print(
            f"warning: the view did not catch up within {timeout:.0f} s "
            f"({found.records:,} records read, {found.lag or 0:,} behind): the answer may be incomplete",
            style="yellow",
        )
    elif show:
        console.print(f"read {found.records:,} records in {time.monotonic() - started:.1f} s", style="dim")
    return store, found


def emit(answer: dict[str, Any], fmt: str, title: str) -> None:
    """Print the answer in the format asked for."""
    if fmt == "json":
        click.echo(as_json(answer))
    elif fmt == "csv":
        if "series" not in answer and "groups" not in answer:
            raise click.UsageError("--csv is for rollup queries; use --json for facets")
        sys.stdout.write(as_csv(answer))
    else:
        print_table(answer, Console(), title)


def run_rollup_query(
    settings: Settings, params: dict[str, str | None], where: list[str], fmt: str, timeout: float
) -> None:
    """Check the query, load the view, answer."""
    limits = Limits()
    catalog = _catalog(settings)
    try:  # checked before reading anything, so that a typo costs nothing
        query = parse_query(params, where, catalog.rollups, now_ms(), limits)
    except QueryError as exc:
        raise _bad(exc) from None
    store, progress = load(settings, timeout, limits, quiet=fmt != "table")
    # The range was resolved before the view was read; "now" is still what the user meant.
    try:
        answer = run_query(store, query, limits)
    except QueryError as exc:
        raise _bad(exc) from None
    answer["view"] = {"caught_up": progress.caught_up, "lag": progress.lag, "records": progress.records}
    what = ", ".join(query.aggregations)
    emit(answer, fmt, f"{query.rollup.name}: {what}")


def run_facets_query(
    settings: Settings, path: str, params: dict[str, str | None], fmt: str, timeout: float
) -> None:
    """Check the facet query, load the view, answer."""
    limits = Limits()
    catalog = _catalog(settings)
    try:
        query = parse_facet_query(path, params, catalog.facets, now_ms(), limits)
    except QueryError as exc:
        raise _bad(exc) from None
    store, progress = load(settings, timeout, limits, quiet=fmt != "table")
    answer = run_facet_query(store, query)
    answer["view"] = {"caught_up": progress.caught_up, "lag": progress.lag, "records": progress.records}
    emit(answer, fmt, f"{path}: top {query.top}")


# -- the commands -------------------------------------------------------------------------
# The shared helpers of pipeline.cli are imported when a command runs: pipeline.cli imports
# this module to register the commands.


@click.command()
@click.argument("rollup")
@click.option("--where", "-w", multiple=True, help="Group filter, e.g. geo.country:France (repeat: AND).")
@click.option("--agg", help="Aggregations, comma-separated, e.g. avg,p95,count (default: all kept).")
@click.option("--every", help="A time series: one point per bucket of this size, e.g. 1h.")
@click.option("--top", help="Only the N groups ranked highest by --by.")
@click.option("--by", help="Aggregation that ranks groups for --top (default: the first of --agg).")
@click.option("--json", "fmt", flag_value="json", help="Print the answer as JSON (as the HTTP API).")
@click.option("--csv", "fmt", flag_value="csv", help="Print groups (or series points) as CSV.")
@range_options
def query(
    rollup: str,
    where: tuple[str, ...],
    agg: str | None,
    every: str | None,
    top: str | None,
    by: str | None,
    fmt: str | None,
    last: str | None,
    since: str | None,
    until: str | None,
    timeout: float,
) -> None:
    """Answer a rollup query over a range, like average cart value by country over the last day.

    \b
      rum-pipeline query cart_value_by_country --last 1d --agg avg,p95,count
      rum-pipeline query cart_value_by_country --last 1d --where geo.country:France --every 1h
      rum-pipeline query actions_by_name --from 2026-12-07T00:00Z --to 2026-12-07T12:00Z --top 5

    Ranges are composed from 1d, 1h and 1m windows; the answer says which it
    used, whether all are final, and how many late actions it does not count.
    See docs/query.md.
    """
    from pipeline.cli import _settings, tune_garbage_collector

    settings = _settings()
    tune_garbage_collector(settings.worker.gc_thresholds)  # the view holds a million objects or more
    params = {
        "rollup": rollup, "last": last, "from": since, "to": until,
        "agg": agg, "every": every, "top": top, "by": by,
    }  # fmt: skip
    run_rollup_query(settings, params, list(where), fmt or "table", timeout)


@click.command()
@click.argument("path")
@click.option("--top", default="20", show_default=True, help="How many values to list.")
@click.option("--json", "fmt", flag_value="json", help="Print the answer as JSON (as the HTTP API).")
@range_options
def facets(
    path: str,
    top: str,
    fmt: str | None,
    last: str | None,
    since: str | None,
    until: str | None,
    timeout: float,
) -> None:
    """The most frequent values of a facet over a range: `rum-pipeline facets context.items --last 1d`.

    Facet windows are 1h and 1d: ranges are widened to whole hours.
    """
    from pipeline.cli import _settings, tune_garbage_collector

    settings = _settings()
    tune_garbage_collector(settings.worker.gc_thresholds)
    run_facets_query(
        settings, path, {"last": last, "from": since, "to": until, "top": top}, fmt or "table", timeout
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 = all).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8081, show_default=True, help="Port (0 = any)."
)
@click.option(
    "--retention",
    default="8d",
    show_default=True,
    help="Windows kept in the view; queries may reach this far back (also the longest range).",
)
@click.option(
    "--sketches-in-memory",
    type=click.IntRange(min=0),
    default=1_000_000,
    show_default=True,
    help="Keys whose sketches stay in memory; the sketches of further keys go to RocksDB "
    "under RUM_DATA_DIR/view (summaries always stay in memory).",
)
@click.option(
    "--monitor-interval",
    type=click.FloatRange(0.1, 3600),
    default=None,
    help="Seconds between two evaluations of the monitors (RUM_MONITOR_INTERVAL, default 5).",
)
@click.option("--loglevel", "-l", default=None, help="debug, info, warning or error (RUM_LOG_LEVEL).")
def serve(
    host: str,
    port: int,
    retention: str,
    sketches_in_memory: int,
    monitor_interval: float | None,
    loglevel: str | None,
) -> None:
    """Serve the query API over a live view of the rollup and facet topics.

    GET /api/v1/query?rollup=cart_value_by_country&last=1d&agg=avg answers like
    `rum-pipeline query`; GET /api/v1/facets/{path}, the OpenAPI document at
    /api/v1/openapi.json, /healthz, and /ready once the view has caught up.
    See docs/query.md.

    Evaluates the monitors of the rollups config every --monitor-interval
    seconds, shared with the other serve instances of RUM_MONITOR_GROUP; their
    states at GET /api/v1/monitors. See docs/monitors.md.
    """
    from pipeline.cli import _run, _settings, _use_fast_event_loop_for_asyncio, tune_garbage_collector
    from pipeline.logs import configure_logging
    from pipeline.serve.run import serve as run_serve
    from pipeline.view.ranges import RangeError, parse_span
    from pipeline.view.request import Limits

    overrides: dict[str, Any] = {"log_level": loglevel, "monitor_interval": monitor_interval}
    settings = _settings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings)
    try:
        kept = parse_span(retention, "--retention")
    except RangeError as exc:
        raise click.BadParameter(exc.message, param_hint="--retention") from None
    _use_fast_event_loop_for_asyncio()
    tune_garbage_collector(settings.worker.gc_thresholds)  # and the view is frozen once caught up
    _run(run_serve(settings, host, port, Limits(retention_ms=kept, max_range_ms=kept), sketches_in_memory))
