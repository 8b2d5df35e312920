"""`rum-pipeline demo`: push generated shop traffic through a worker and show what flowed.

Reads the output topics as a downstream consumer would: the enriched and
bad-row topics from the offsets they had when the demo started, the rollup and
facet-index upserts from the beginning (the latest record per key is the
truth), and refreshes a summary while traffic flows. Stops the worker it started on exit or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from pipeline.consume import assign_topics, make_reader
from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, publish
from pipeline.settings import Settings
from pipeline.settings_env import child_env
from pipeline.topics import BAD, ENRICHED, FACETS, RAW, ROLLUPS

#: The rollup the demo table shows (config/rollups.yaml).
CART_ROLLUP = "cart_value_by_country"
SETTLE_S = 3.0


class Tally:
    """What a downstream consumer of the output topics has seen so far."""

    def __init__(self) -> None:
        self.enriched = 0
        self.bad: Counter[str] = Counter()
        #: Latest upsert per key of the rollup and facet-index topics.
        self.rollups: dict[bytes, dict[str, Any]] = {}
        self.facets: dict[bytes, dict[str, Any]] = {}
        self.sample: dict[str, Any] | None = None

    def add_enriched(self, event: dict[str, Any]) -> None:
        """Count one enriched action (and keep a checkout with geo as the sample)."""
        self.enriched += 1
        if self.sample is None and event["action"]["target"]["name"] == "checkout" and "geo" in event:
            self.sample = event

    def counted(self) -> int:
        """Actions the facet index has counted in its day windows (every action has a name)."""
        return sum(
            r["count"]
            for r in self.facets.values()
            if r["kind"] == "value" and r["interval"] == "1d" and r["facet"] == "action.target.name"
        )

    def cart_by_country(self) -> tuple[int | None, list[dict[str, Any]]]:
        """The latest day window of the checkout rollup, one record per country."""
        daily = [r for r in self.rollups.values() if r["rollup"] == CART_ROLLUP and r["interval"] == "1d"]
        if not daily:
            return None, []
        latest = max(r["window_start"] for r in daily)
        rows = [r for r in daily if r["window_start"] == latest]
        return latest, sorted(rows, key=lambda r: -r["aggregations"]["count"])

    def top_facets(self, interval: str = "1d") -> dict[str, list[tuple[Any, int]]]:
        """The most frequent values of each facet in its latest window."""
        latest: dict[str, int] = {}
        for record in self.facets.values():
            if record["kind"] == "value" and record["interval"] == interval:
                latest[record["facet"]] = max(latest.get(record["facet"], 0), record["window_start"])
        tops: dict[str, list[tuple[Any, int]]] = {}
        for record in self.facets.values():
            facet = record["facet"]
            if (
                record["kind"] == "value"
                and record["interval"] == interval
                and record["window_start"] == latest[facet]
            ):
                tops.setdefault(facet, []).append((record["value"], record["count"]))
        return {f: sorted(v, key=lambda x: -x[1])[:6] for f, v in sorted(tops.items())}

    def render(self, produced: int, total: int) -> Group:
        """The summary as rich tables."""
        head = Table.grid(padding=(0, 2))
        bad = str(sum(self.bad.values())) + (f" {dict(self.bad)}" if self.bad else "")
        head.add_row(
            "produced",
            f"{produced}/{total}",
            "enriched",
            str(self.enriched),
            "bad rows",
            bad,
            "rollup upserts seen",
            str(len(self.rollups) + len(self.facets)),
        )
        window, rows = self.cart_by_country()
        when = time.strftime("%Y-%m-%d", time.gmtime(window / 1000)) if window else "-"
        cart = Table(
            title=f"Average cart value by country, checkouts, {when}",
            caption=f"rollup {CART_ROLLUP}, 1d window (UTC)",
            title_justify="left",
            caption_justify="left",
        )
        for col in ("country", "checkouts", "avg EUR", "p50", "p95", "min", "max", "buyers"):
            cart.add_column(col, justify="left" if col == "country" else "right")
        for record in rows[:12]:
            aggs = record["aggregations"]
            cart.add_row(
                str(record["group"].get("geo.country") or "(no geo)"),
                str(aggs["count"]),
                _money(aggs.get("avg")),
                _money(aggs.get("p50")),
                _money(aggs.get("p95")),
                _money(aggs.get("min")),
                _money(aggs.get("max")),
                f"{aggs.get('cardinality(usr.id)', 0):.0f}",
            )
        tops = self.top_facets()
        facets = Table(title="Top facet values today - from the facet index", title_justify="left")
        for name in tops or ["(nothing counted yet)"]:
            facets.add_column(name)
        for i in range(6):
            facets.add_row(*(f"{t[i][0]} ({t[i][1]})" if i < len(t) else "" for t in tops.values()))
        return Group(head, cart, facets)


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def run_demo(settings: Settings, count: int, rate: float, seed: int, console: Console) -> Tally:
    """Produce ``count`` actions and follow them through the pipeline until all came out."""
    enriched_topic, bad_topic = settings.topic(ENRICHED), settings.topic(BAD)
    rollups_topic, facets_topic = settings.topic(ROLLUPS), settings.topic(FACETS)
    consumer = make_reader(settings)
    await consumer.start()
    tally = Tally()
    produced = 0

    def take(batch: dict[Any, list[Any]]) -> None:
        for tp, records in batch.items():
            for record in records:
                if tp.topic == enriched_topic:
                    tally.add_enriched(orjson.loads(record.value))
                elif tp.topic == bad_topic:
                    tally.bad[orjson.loads(record.value)["kind"]] += 1
                elif tp.topic == rollups_topic:
                    tally.rollups[record.key] = orjson.loads(record.value)
                else:
                    tally.facets[record.key] = orjson.loads(record.value)

    try:
        await assign_topics(consumer, [enriched_topic, bad_topic], start="end")
        # The upsert topics are read from the beginning, as a new downstream
        # consumer would: the latest record per key is the truth.
        await assign_topics(consumer, [rollups_topic, facets_topic], start="beginning", add=True)
        # What earlier traffic left in today's windows, so that the demo knows when its own
        # actions are all counted.
        ends = await consumer.end_offsets([tp for tp in consumer.assignment() if tp.topic == facets_topic])
        catch_up = time.monotonic() + 60
        while time.monotonic() < catch_up:
            behind = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
            if not behind:
                break
            take(await consumer.getmany(*behind, timeout_ms=250, max_records=5000))
        before = tally.counted()

        def sent(n: int) -> None:
            nonlocal produced
            produced += n

        generator = TrafficGenerator(seed=seed, malformed_share=0.01)
        messages = (Message(m.key, m.value, m.malformed) for m in generator.messages(count))
        producing = asyncio.create_task(publish(settings, settings.topic(RAW), messages, rate, on_sent=sent))
        last_change = time.monotonic()
        with Live(tally.render(produced, count), console=console, refresh_per_second=4) as live:
            while True:
                batch = await consumer.getmany(timeout_ms=250, max_records=5000)
                take(batch)
                if batch:
                    last_change = time.monotonic()
                live.update(tally.render(produced, count))
                done = tally.enriched + sum(tally.bad.values())
                # Everything came out, the facet index counted every enriched action (it trails
                # them by a flush or two), and the upserts have settled for a moment.
                answered = tally.counted() - before >= tally.enriched or not settings.rollups.enabled
                settled = time.monotonic() - last_change > SETTLE_S
                if producing.done() and done >= count and answered and settled:
                    break
                if producing.done() and time.monotonic() - last_change > 60:
                    console.print("[red]no output for 60 s: is the worker running? see its log")
                    break
        await producing
    finally:
        await consumer.stop()
    return tally


def start_worker(log: Path, values: Mapping[str, Any] | None = None) -> subprocess.Popen[bytes]:
    """A `rum-pipeline worker` child process logging to ``log``.

    ``values`` are the settings given to this process explicitly (``--set``):
    the worker gets them too, so it reads the same topics. Faust's web server
    stays off unless a port is set.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    env = child_env(os.environ, values, defaults={"worker.web_port": 0})
    cli = str(Path(sys.executable).with_name("rum-pipeline"))
    with open(log, "wb") as out:
        return subprocess.Popen(
            [cli, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Stop a child process gracefully (SIGTERM), or kill it after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
