"""Monitors: thresholds on rollup aggregations, evaluated per group, with transitions and webhooks.

- :mod:`pipeline.monitors.config`: the ``monitors:`` section of the rollup config, validated;
- :mod:`pipeline.monitors.model`: :class:`Monitor`, :class:`Status` and groups;
- :mod:`pipeline.monitors.evaluate`: the state machine (no I/O);
- :mod:`pipeline.monitors.records`: the event and state records and their Kafka keys;
- :mod:`pipeline.monitors.webhook`: the asynchronous webhook notifier.

Users' documentation: docs/monitors.md.
"""
