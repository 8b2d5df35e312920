"""`rum-pipeline demo`: push generated shop traffic through a worker and show what flowed.

Reads the enriched and bad-row topics as a downstream consumer would, from the
offsets they had when the demo started, and refreshes a summary while traffic
flows. Stops the worker it started on exit or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from pipeline.consume import assign_topics
from pipeline.generate import TrafficGenerator
from pipeline.produce import Message, publish
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, RAW


class Tally:
    """Running counts of what came out of the pipeline."""

    def __init__(self) -> None:
        self.enriched = 0
        self.bad: Counter[str] = Counter()
        self.facets: dict[str, Counter[str]] = {
            k: Counter() for k in ("action", "country", "browser", "device", "os")
        }
        self.cart: dict[str, list[float]] = {}
        self.sample: dict[str, Any] | None = None

    def add_enriched(self, event: dict[str, Any]) -> None:
        """Count one enriched action."""
        self.enriched += 1
        name = event["action"]["target"]["name"]
        country = event.get("geo", {}).get("country", "(no geo)")
        self.facets["action"][name] += 1
        self.facets["country"][country] += 1
        self.facets["browser"][event.get("browser", {}).get("name", "(unknown)")] += 1
        self.facets["device"][event.get("device", {}).get("type", "(unknown)")] += 1
        self.facets["os"][event.get("os", {}).get("name", "(unknown)")] += 1
        value = event.get("context", {}).get("value")
        if name == "checkout" and isinstance(value, int | float):
            self.cart.setdefault(country, []).append(float(value))
            if self.sample is None and "geo" in event:
                self.sample = event

    def render(self, produced: int, total: int) -> Group:
        """The summary as rich tables."""
        head = Table.grid(padding=(0, 2))
        head.add_row(
            "produced",
            f"{produced}/{total}",
            "enriched",
            str(self.enriched),
            "bad rows",
            str(sum(self.bad.values())) + (f" {dict(self.bad)}" if self.bad else ""),
        )
        cart = Table(title="Average cart value by country (checkout)", title_justify="left")
        for col in ("country", "checkouts", "avg EUR", "min", "max"):
            cart.add_column(col, justify="left" if col == "country" else "right")
        ranked = sorted(self.cart.items(), key=lambda kv: -len(kv[1]))[:12]
        for country, values in ranked:
            cart.add_row(
                country,
                str(len(values)),
                f"{sum(values) / len(values):.2f}",
                f"{min(values):.2f}",
                f"{max(values):.2f}",
            )
        facets = Table(title="Top facet values", title_justify="left")
        for name in self.facets:
            facets.add_column(name)
        tops = {k: c.most_common(6) for k, c in self.facets.items()}
        for i in range(6):
            facets.add_row(*(f"{t[i][0]} ({t[i][1]})" if i < len(t) else "" for t in tops.values()))
        return Group(head, cart, facets)


async def run_demo(settings: Settings, count: int, rate: float, seed: int, console: Console) -> Tally:
    """Produce ``count`` actions and follow them through the pipeline until all came out."""
    enriched_topic, bad_topic = settings.topic(ENRICHED), settings.topic(BAD)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    tally = Tally()
    produced = 0
    try:
        await assign_topics(consumer, [enriched_topic, bad_topic], start="end")

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
                for tp, records in batch.items():
                    for record in records:
                        if tp.topic == enriched_topic:
                            tally.add_enriched(orjson.loads(record.value))
                        else:
                            tally.bad[orjson.loads(record.value)["kind"]] += 1
                if batch:
                    last_change = time.monotonic()
                live.update(tally.render(produced, count))
                done = tally.enriched + sum(tally.bad.values())
                if producing.done() and done >= count:
                    break
                if producing.done() and time.monotonic() - last_change > 60:
                    console.print("[red]no output for 60 s: is the worker running? see its log")
                    break
        await producing
    finally:
        await consumer.stop()
    return tally


def start_worker(log: Path) -> subprocess.Popen[bytes]:
    """A `rum-pipeline worker` child process logging to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("RUM_WEB_PORT", "0")
    cli = str(Path(sys.executable).with_name("rum-pipeline"))
    with open(log, "wb") as out:
        return subprocess.Popen(
            [cli, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Stop the worker gracefully, or kill it after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
