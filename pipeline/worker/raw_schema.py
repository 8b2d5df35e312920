"""The raw topic's faust schema: keys and values as the bytes Kafka holds.

faust decodes every message of a topic through its schema before it reaches a
stream. With ``key_serializer="raw"`` and ``value_serializer="raw"`` that is
two serializer-registry lookups and codec calls per message, only to return
the bytes unchanged; the worker reads ``event.message`` anyway. Overriding
``Schema.loads_key`` and ``loads_value`` (faust's documented way to customise
decoding) hands the bytes over as they are.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT, Message


class RawBytes(faust.Schema):
    """Keys and values as they came: what the ``raw`` codec gives for bytes, without the calls."""

    def loads_key(self, app: AppT, message: Message, *, loads: Any = None, serializer: Any = None) -> Any:
        """The message's key bytes (or None)."""
        return message.key

    def loads_value(self, app: AppT, message: Message, *, loads: Any = None, serializer: Any = None) -> Any:
        """The message's value bytes (or None)."""
        return message.value
