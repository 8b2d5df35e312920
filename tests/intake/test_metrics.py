"""The intake's metrics: the names dashboards use, one registry per intake, process metrics on request."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from pipeline.intake.metrics import IntakeMetrics

DOCS = Path(__file__).parents[2] / "docs"


def _names(metrics: IntakeMetrics) -> set[str]:
    """Names as scraped: counters with their ``_total``."""
    return {f.name + ("_total" if f.type == "counter" else "") for f in metrics.registry.collect()}


def test_every_metric_of_the_intake_is_named_in_the_docs() -> None:
    documented = {
        name
        for page in DOCS.rglob("*.md")
        for name in re.findall(r"rum_intake_[a-z_]+", page.read_text(encoding="utf-8"))
    }
    exposed = _names(IntakeMetrics())
    assert exposed <= documented, exposed - documented


def test_intakes_do_not_share_counts() -> None:
    first, second = IntakeMetrics(), IntakeMetrics()
    first.requests.labels(endpoint="rum", status="202").inc()
    first.accepted.labels(topic="rum.actions.raw").inc(3)
    text = generate_latest(second.registry).decode()
    assert 'rum_intake_requests_total{endpoint="rum",status="202"}' not in text
    assert (
        'rum_intake_events_accepted_total{topic="rum.actions.raw"} 3.0'
        in generate_latest(first.registry).decode()
    )


def test_process_metrics_only_when_asked() -> None:
    assert not any(name.startswith("process_") for name in _names(IntakeMetrics()))
    assert "process_cpu_seconds_total" in _names(IntakeMetrics(process=True))
