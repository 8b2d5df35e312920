"""Prometheus metrics of the intake, served at ``GET /metrics`` by the intake itself."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

# From a loopback acknowledgement (~1 ms) up to the produce timeout.
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class IntakeMetrics:
    """The intake's metric objects, on their own registry (one per intake, so tests do not share)."""

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "rum_intake_requests",
            "HTTP requests answered by the intake, by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.accepted = Counter(
            "rum_intake_events_accepted",
            "Events acknowledged by Kafka, by topic (default topic name, without prefix).",
            ["topic"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "rum_intake_events_rejected",
            "Events refused one by one (parse, schema, size, application).",
            ["reason"],
            registry=self.registry,
        )
        self.bad_rows = Counter(
            "rum_intake_bad_rows",
            "Refused events written to the bad topic as bad rows of kind intake.",
            registry=self.registry,
        )
        self.disconnects = Counter(
            "rum_intake_client_disconnects",
            "Requests whose client closed the connection before sending its whole body (status 499).",
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "rum_intake_kafka_ack_seconds",
            "Time from producing a request's events to Kafka acknowledging all of them.",
            buckets=_ACK_BUCKETS,
            registry=self.registry,
        )
        self.in_flight_bytes = Gauge(
            "rum_intake_in_flight_bytes",
            "Request bytes held by requests being processed.",
            registry=self.registry,
        )
        self.kafka_ready = Gauge(
            "rum_intake_kafka_ready", "1 when the intake is connected to Kafka.", registry=self.registry
        )
