"""`rum-pipeline query` and `rum-pipeline facets`: one-shot answers from the rollup and facet topics.

Each run reads the compacted topics from the beginning into a view (with a
progress line on stderr), answers, and exits. A wrong argument exits with
status 2 and names it; an unreachable Kafka exits with status 1.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

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
            f"cannot read the rollup topics from {settings.kafka_bootstrap} (RUM_KAFKA_BOOTSTRAP): {exc}"
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
        query = parse_query(params, where, catalog.rollups, int(time.time() * 1000), limits)
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
        query = parse_facet_query(path, params, catalog.facets, int(time.time() * 1000), limits)
    except QueryError as exc:
        raise _bad(exc) from None
    store, progress = load(settings, timeout, limits, quiet=fmt != "table")
    answer = run_facet_query(store, query)
    answer["view"] = {"caught_up": progress.caught_up, "lag": progress.lag, "records": progress.records}
    emit(answer, fmt, f"{path}: top {query.top}")
