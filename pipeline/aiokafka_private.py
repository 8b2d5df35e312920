"""Every use of aiokafka beyond its documented API, in one module (aiokafka is pinned for it).

aiokafka is pinned to an exact version in pyproject.toml;
``tests/test_aiokafka_private.py`` fails when an upgrade changes anything used here:

- ``AIOKafkaConsumer._client`` (the consumer's own ``AIOKafkaClient``) and its
  ``add_topic`` and ``force_metadata_update``: a consumer outside any group
  knows the partitions only of the topics it tracks, and aiokafka has no
  public call that makes it track one before it is assigned (``topics()``
  fetches into a throw-away copy of the metadata, which
  ``partitions_for_topic`` never reads); the intake's producer uses the same
  two on its client, to follow only its own topics and to check the cluster;
- ``aiokafka.conn.create_conn``, an undocumented module: one connection to one
  broker, to learn why a bootstrap failed (aiokafka's bootstrap logs the
  reason and raises a generic error).

Nothing else in the package reaches into aiokafka's internals.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer

#: The aiokafka version this module was checked against (pinned in pyproject.toml).
AIOKAFKA_VERSION = "0.14.0"


def consumer_client(consumer: AIOKafkaConsumer) -> AIOKafkaClient:
    """The client a consumer fetches its metadata with (private attribute ``_client``)."""
    client = consumer._client
    if not isinstance(client, AIOKafkaClient):  # an upgrade that renamed or replaced it
        raise TypeError(f"AIOKafkaConsumer._client is {type(client).__name__}, not AIOKafkaClient")
    return client


def track_topic(client: AIOKafkaClient, topic: str) -> None:
    """Make ``client`` fetch ``topic``'s metadata from now on (undocumented ``add_topic``)."""
    client.add_topic(topic)


async def update_metadata(client: AIOKafkaClient) -> bool:
    """Fetch the metadata now (undocumented ``force_metadata_update``); False when no broker answered."""
    return bool(await client.force_metadata_update())


async def refresh_topic_metadata(consumer: AIOKafkaConsumer, topic: str) -> None:
    """Make ``consumer`` track ``topic`` and wait for fresh metadata, so ``partitions_for_topic`` knows it."""
    client = consumer_client(consumer)
    track_topic(client, topic)  # an assigned consumer only asks for the topics it tracks
    await update_metadata(client)


async def open_connection(host: str, port: int, request_timeout_ms: int, **kwargs: Any) -> Any:
    """One connection to one broker (``aiokafka.conn.create_conn``); the caller closes it."""
    from aiokafka.conn import create_conn

    return await create_conn(host, port, request_timeout_ms=request_timeout_ms, **kwargs)
