"""The `rum-pipeline` command line."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import Any

import click

from pipeline import __version__, query_cli
from pipeline.errors import PipelineError
from pipeline.logs import configure_logging
from pipeline.settings import Settings, load_settings
from pipeline.settings_env import names_of
from pipeline.settings_sources import flat_names, leaves, masked


def _settings(**overrides: Any) -> Settings:
    """The settings, with the root's ``--set`` values and then this command's options winning."""
    context = click.get_current_context(silent=True)
    given = dict(context.find_root().obj or {}) if context is not None else {}
    table = flat_names(Settings)
    for name, value in overrides.items():
        if value is not None:  # an option given on the command line wins over a --set of the same setting
            given[".".join(table[name]) if name in table else name] = value
    try:
        settings = load_settings(**given)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    # A command's output is for a person: its logs are warnings and errors (and
    # everything with RUM_LOG_LEVEL=debug). The worker logs at RUM_LOG_LEVEL.
    configure_logging(settings, level=None if settings.log.level.lower() == "debug" else "warning")
    return settings


def _assignments(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``--set group.field=value`` options as a mapping of dotted setting name to text.

    An old flat name (``web_port``) is turned into its dotted one, the name
    a command's own option is given under, so that the option wins.
    """
    table = flat_names(Settings)
    found: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"expected SETTING=VALUE, e.g. kafka.partitions=6, got {item!r}")
        found[".".join(table[name]) if name in table else name] = value
    return found


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rum-pipeline")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="SETTING=VALUE",
    callback=_assignments,
    help="Set one setting for this command, e.g. --set kafka.partitions=6 (repeatable); wins over the "
    "environment and the config file. `rum-pipeline settings` lists them.",
)
@click.pass_context
def main(ctx: click.Context, assignments: dict[str, str]) -> None:
    """rum-pipeline: validate, enrich and aggregate custom RUM actions on Kafka.

    Every command reads its settings from RUM_* environment variables and the
    optional config file named by RUM_CONFIG_FILE; `rum-pipeline settings`
    lists them all; `--set group.field=value` sets one for a command. Start a
    local broker with `make broker`.
    """
    ctx.obj = assignments


@main.command()
@click.option(
    "--web-port",
    type=int,
    default=None,
    help="Port of faust's own web server (RUM_WEB_PORT; default 0: off). The pipeline serves "
    "nothing there: metrics and health are on --metrics-port.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for this worker's local state (RUM_DATA_DIR). One per worker on a host.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics, /healthz and /ready (RUM_METRICS_PORT, default 9464; 0 turns it off). "
    "When taken, a free port is used and logged.",
)
@click.option("--loglevel", "-l", default=None, help="debug, info, warning or error (RUM_LOG_LEVEL).")
def worker(
    web_port: int | None, data_dir: Path | None, metrics_port: int | None, loglevel: str | None
) -> None:
    """Start a worker: raw -> enriched | bad rows.

    Start several (on one host or many) to share the work: they join one
    consumer group and split the raw topic's partitions between them.
    Validates the rollup config (RUM_ROLLUPS_CONFIG), creates missing topics,
    then starts. Exits with one line if Kafka is unreachable.
    """
    settings = _settings(web_port=web_port, data_dir=data_dir, metrics_port=metrics_port, log_level=loglevel)
    configure_logging(settings)  # RUM_LOG_FORMAT, RUM_LOG_LEVEL
    _use_fast_event_loop()
    from faust.worker import Worker

    from pipeline.admin import create_topics
    from pipeline.app import create_app
    from pipeline.metrics import WorkerMetrics

    metrics = WorkerMetrics(settings)
    try:  # validates the rollup config before anything else
        app = create_app(settings, metrics)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    try:  # faust creates only the last folder of its data directory
        settings.worker.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"cannot create the data directory {settings.worker.data_dir}: {exc}"
        ) from None
    _run(create_topics(settings))
    try:  # /healthz answers, and /ready says why not yet, while the worker joins its group
        metrics.serve()
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    tune_garbage_collector(settings.worker.gc_thresholds)
    # Logging is already configured (RUM_LOG_FORMAT): the worker must not replace it.
    worker = Worker(app, loglevel=settings.log.level.lower(), quiet=True, override_logging=False)
    worker.spinner = None  # faust drops its terminal spinner when it sets up logging; so do we
    worker.execute_from_commandline()


def tune_garbage_collector(thresholds: tuple[int, int, int] | None) -> None:
    """Collect cyclic garbage less often (RUM_GC_THRESHOLDS), and never scan what start-up made.

    A worker keeps many objects alive for a while (the consumed records held
    until the next rollup flush, the partials of open windows), and Python's default
    thresholds (700, 10, 10) scan all of them again and again (what that cost and
    what the defaults save: docs/decisions/0004-garbage-collector-thresholds.md).
    The modules, the app and the caches made at start-up are frozen first
    (``gc.freeze``): they live as long as the process and need no scans.
    """
    if thresholds is None:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def _use_fast_event_loop() -> None:
    """Run on uvloop when it is installed: faust's per-message overhead is mostly event-loop work."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return
    import mode.loop

    mode.loop.use("uvloop")


@main.command()
@click.option("--host", default=None, help="Address to listen on (RUM_INTAKE_HOST; 0.0.0.0 = all).")
@click.option("--port", type=int, default=None, help="Port to listen on (RUM_INTAKE_PORT; 0 = any free).")
@click.option("--loglevel", "-l", default=None, help="debug, info, warning or error (RUM_LOG_LEVEL).")
def intake(host: str | None, port: int | None, loglevel: str | None) -> None:
    """Start the HTTP intake: browsers and SDKs post RUM events, custom actions go to Kafka.

    Takes the browser SDK's batches at POST /api/v2/rum (and through its proxy
    option, ?ddforward=...), server-side actions at POST /v1/actions, and
    answers 202 only once Kafka acknowledged every accepted event. Prints
    "intake: listening on http://HOST:PORT" when ready. Client tokens:
    RUM_INTAKE_CLIENT_TOKENS; see docs/intake-and-sdks.md.
    """
    settings = _settings(intake_host=host, intake_port=port, log_level=loglevel)
    from pipeline.intake.run import serve

    configure_logging(settings)  # RUM_LOG_FORMAT, RUM_LOG_LEVEL
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    _use_fast_event_loop_for_asyncio()
    _run(serve(settings))


def _use_fast_event_loop_for_asyncio() -> None:
    """Run plain asyncio programs on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@main.group()
def topics() -> None:
    """Create and inspect the pipeline's Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic that is missing (safe to run again: changes nothing then).

    Raw, enriched and bad topics get RUM_PARTITIONS partitions (12 by default);
    the facet index and rollup topics are compacted.
    """
    from pipeline.admin import create_topics

    settings = _settings()
    for result in _run(create_topics(settings)):
        state = "created" if result.created else "exists"
        note = f"  ({result.note})" if result.note else ""
        click.echo(f"{state:8} {result.name}  partitions={result.partitions}{note}")


@topics.command("list")
def topics_list() -> None:
    """List the pipeline's topics and what each one carries."""
    from pipeline.topics import topic_specs

    for name, spec in topic_specs(_settings()):
        extra = ", compacted" if spec.compacted else ""
        click.echo(f"{name:28} {spec.description}{extra}")


@main.command()
@click.argument("source", type=click.File("rb"), required=False)
@click.option(
    "--generate",
    "-g",
    "count",
    type=click.IntRange(min=1),
    default=None,
    help="Generate N realistic shop actions instead of reading SOURCE.",
)
@click.option(
    "--rate",
    "-r",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Messages per second (0 = as fast as the broker acknowledges).",
)
@click.option(
    "--seed",
    "-s",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the generator: the same seed gives the same bytes.",
)
@click.option(
    "--malformed",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of generated messages that are malformed (parse, schema or size faults).",
)
@click.option(
    "--span",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Generated actions are dated evenly over this span, ending now (e.g. 10s, 5m, 1h, 1d).",
)
@click.option("--topic", "-t", default=None, help="Topic to publish to (default: the raw topic).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def produce(
    source: Any,
    count: int | None,
    rate: float,
    seed: int,
    malformed: float,
    span: str,
    topic: str | None,
    progress: bool,
) -> None:
    """Publish raw actions to Kafka, from SOURCE (JSON lines, '-' for stdin) or --generate.

    Each line is sent byte-exact as one message, keyed by its session.id.
    Waits for every acknowledgement, then prints a summary.

    \b
    Examples:
      rum-pipeline produce actions.jsonl
      rum-pipeline produce --generate 10000 --rate 500 --seed 7 --malformed 0.01
      rum-pipeline produce --generate 30000 --span 5s   # dated like live traffic
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pipeline.produce import Message, publish, read_lines
    from pipeline.topics import RAW

    if (source is None) == (count is None):
        raise click.UsageError("give either SOURCE or --generate N")
    from pipeline.rollups.config import parse_duration

    try:
        span_s = parse_duration(span)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--span") from None
    settings = _settings()
    target = topic or settings.topic(RAW)
    if count is not None:
        from pipeline.generate import TrafficGenerator

        generator = TrafficGenerator(seed=seed, malformed_share=malformed, span_ms=span_s * 1000)
        messages: Any = (Message(m.key, m.value, m.malformed) for m in generator.messages(count))
    else:
        messages = read_lines(source)
    columns = [TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    from rich.console import Console

    with Progress(*columns, disable=not progress, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("produce", total=count)
        summary = _run(publish(settings, target, messages, rate, on_sent=lambda n: bar.advance(task, n)))
    bad = ", ".join(f"{k}={v}" for k, v in sorted(summary.malformed.items())) or "none"
    click.echo(
        f"produced {summary.sent} messages to {target} in {summary.seconds:.1f} s "
        f"({summary.rate:,.0f}/s); failed {summary.failed}; malformed on purpose: {bad}"
    )
    if summary.failed:
        sys.exit(1)


@main.command()
@click.option(
    "--count",
    "-n",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Generated actions to push through (1% of them malformed on purpose).",
)
@click.option(
    "--rate",
    "-r",
    type=click.FloatRange(min=0),
    default=1000.0,
    show_default=True,
    help="Actions per second (0 = as fast as possible).",
)
@click.option("--seed", "-s", type=int, default=None, help="Generator seed (default: a new one each run).")
@click.option(
    "--worker/--no-worker",
    "with_worker",
    default=True,
    show_default=True,
    help="Start a worker for the demo (stopped at the end); --no-worker uses running ones.",
)
def demo(count: int, rate: float, seed: int | None, with_worker: bool) -> None:
    """Push generated shop traffic through the pipeline and show what flowed.

    Starts a worker, produces COUNT actions, and follows the enriched and
    bad-row topics as a downstream consumer would, refreshing the summary while
    traffic flows. Ctrl-C stops everything it started.
    """
    import time

    from rich.console import Console

    from pipeline.admin import create_topics
    from pipeline.demo import run_demo, start_worker, stop_worker

    settings = _settings()
    console = Console()
    _run(create_topics(settings))
    worker_log = settings.worker.data_dir / "demo-worker.log"
    given = click.get_current_context().find_root().obj or {}
    proc = start_worker(worker_log, given) if with_worker else None
    if proc:
        console.print(f"worker started (pid {proc.pid}), log: {worker_log}")
    try:
        tally = _run(
            run_demo(settings, count, rate, seed if seed is not None else time.time_ns() % 1000000, console)
        )
        if tally.sample:
            import orjson

            console.print("One enriched checkout, as downstream consumers receive it:")
            console.print_json(orjson.dumps(tally.sample).decode())
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        if proc:
            stop_worker(proc)
            console.print("worker stopped")


@main.command()
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(["parse", "schema", "size", "enrichment"]),
    help="Only bad rows of this kind (repeatable).",
)
@click.option("--since", default=None, help="Only rows that failed at or after: ISO time or an age (2h, 7d).")
@click.option("--until", default=None, help="Only rows that failed before: ISO time or an age (30m).")
@click.option("--error", default=None, help="Only rows with an error matching this regex ('<path>: <msg>').")
@click.option(
    "--source-partition",
    "partitions",
    multiple=True,
    type=click.IntRange(min=0),
    help="Only inputs from this raw partition (repeatable).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N rows not yet recovered.")
@click.option(
    "--patch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="RFC 6902 JSON Patch applied to each payload; rows it does not apply to stay unrecovered.",
)
@click.option(
    "--schema",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Raw-action JSON Schema to check with instead of the bundled one: the schema the running "
    "workers validate with, when they are newer than this installation.",
)
@click.option("--apply", is_flag=True, help="Publish (default: a dry run, nothing published).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def recover(
    kinds: tuple[str, ...],
    since: str | None,
    until: str | None,
    error: str | None,
    partitions: tuple[int, ...],
    limit: int | None,
    patch: Path | None,
    schema: Path | None,
    apply: bool,
    progress: bool,
) -> None:
    """Re-publish bad rows to the raw topic, repaired, each rejected input at most once.

    Reads the bad topic up to its current end, keeps the rows the filters
    select, applies --patch, and checks each payload as a worker would: only
    payloads a worker accepts are published; the rest are counted as still
    invalid with their errors. Without --apply nothing is published.

    Each input is published once, ever: a compacted ledger topic records it in
    the same Kafka transaction, so running recover again (with any filters,
    or after a crash) skips it. A second run started while one is going stops
    the first one (same transactional id).

    \b
    Examples:
      rum-pipeline recover --kind schema --since 2h
      rum-pipeline recover --error 'missing.*type' --patch fix.json
      rum-pipeline recover --error 'missing.*type' --patch fix.json --apply
    """
    import logging

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pipeline.clock import now_ms
    from pipeline.recover import Checker, Planner, Selection, compile_error_pattern, load_patch, parse_time
    from pipeline.recover_run import render, run_recovery

    settings = _settings()
    if settings.log.level.lower() != "debug":
        # aiokafka notes every topic a reader asks about at INFO; they would drown the report.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        now = now_ms()
        selection = Selection(
            kinds=frozenset(kinds),
            since_ms=parse_time(since, now) if since else None,
            until_ms=parse_time(until, now) if until else None,
            error=compile_error_pattern(error) if error else None,
            source_partitions=frozenset(partitions),
        )
        planner = Planner(
            selection, Checker(settings, schema), set(), load_patch(patch) if patch else None, limit
        )
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    console = Console()
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("reading bad rows", total=None)

        def advance(scanned: int, total: int, published: int) -> None:
            note = f", published {published}" if apply else ""
            bar.update(task, completed=scanned, total=total, description=f"reading bad rows{note}")

        try:
            summary = asyncio.run(run_recovery(settings, planner, apply=apply, on_progress=advance))
        except PipelineError as exc:
            failure = str(exc)
        else:
            failure = ""
    if failure:
        if planner.summary.scanned:  # what was done before it stopped
            render(planner.summary, console, apply)
        raise click.ClickException(failure)
    render(summary, console, apply)
    if not apply and summary.outcomes["ready"]:
        console.print("dry run: nothing was published; add --apply to publish")


@main.group("config")
def config_group() -> None:
    """Validate the facets, measures, rollups and monitors config (RUM_ROLLUPS_CONFIG)."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option(
    "--probe-webhooks",
    is_flag=True,
    help="Also open a TCP connection to each monitor's webhook host (nothing is sent).",
)
def config_check(file: Path | None, probe_webhooks: bool) -> None:
    """Validate FILE (default: RUM_ROLLUPS_CONFIG, else config/rollups.yaml) as a worker would.

    Prints every error with the rollup or monitor, the key and, for filters, the
    column (monitors: the line and column); exits with status 1 when there is
    any. On success, summarizes the config. Webhook URLs are checked as text
    only, unless --probe-webhooks asks to connect to their hosts.
    """
    from pipeline.monitors.config import load_monitors
    from pipeline.rollups.config import default_config_path, format_duration, load_rollup_config

    path = file or _settings().rollups.config or default_config_path()
    try:
        config = load_rollup_config(path)
        monitors = load_monitors(path, config)  # checked against the rollups, so only once they are valid
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    if probe_webhooks:
        from pipeline.monitors.webhook import probe_webhooks as probe

        unreachable = asyncio.run(probe(monitors))
        if unreachable:
            raise click.ClickException("unreachable webhooks:\n" + "\n".join(f"  {u}" for u in unreachable))
    click.echo(f"{path}: OK")
    click.echo(f"  facets:   {', '.join(f.path for f in config.facets) or '(none)'}")
    click.echo(f"  measures: {', '.join(m.path for m in config.measures) or '(none)'}")
    for rollup in config.rollups:
        intervals = ", ".join(format_duration(i) for i in rollup.intervals)
        group = ", ".join(rollup.group_by) or "(no group)"
        click.echo(
            f"  rollup {rollup.name}: filter {rollup.filter.text or '*'!r}, by {group}, every {intervals}"
        )
    grace, retention = format_duration(config.grace_seconds), format_duration(config.retention_seconds)
    click.echo(f"  grace {grace}, retention {retention}")
    for monitor in monitors:
        scope = "per group" if monitor.multi else "overall"
        window = format_duration(monitor.window_ms // 1000)
        click.echo(
            f"  monitor {monitor.name}: {monitor.aggregation} of {monitor.rollup} over {window} {scope}, "
            f"alert {monitor.comparator} {monitor.alert:g}"
        )


@main.command("settings")
def show_settings() -> None:
    """Show every setting: its name, environment variables, current value and meaning."""
    settings = _settings()
    for path, field in leaves(Settings):
        value: Any = settings
        for part in path:
            value = getattr(value, part)
        value = masked(field, getattr(value, "value", value))  # an enum's text; a secret as stars
        nested, *flat = names_of(path, Settings)
        names = nested + "".join(f" ({name})" for name in flat)
        click.echo(f"{'.'.join(path):34} {value!s:24} {names}  {field.description}")


# Downstream commands (query, facets, serve) live in their own module.
for _command in (query_cli.query, query_cli.facets, query_cli.serve):
    main.add_command(_command)


if __name__ == "__main__":
    main()
