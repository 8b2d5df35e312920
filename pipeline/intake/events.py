"""From request bodies to Kafka records: parse, check, stamp and route each event.

No HTTP and no Kafka here: the server hands the decoded body and what it
knows about the request (:class:`Stamps`), and gets back the records to
produce and the rejected lines with their reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from pipeline.intake.config import ANY_APPLICATION

#: ``raw``: custom actions for the enrichment workers; ``other``: every other RUM event;
#: ``bad``: bad rows of the events the intake refused.
Route = Literal["raw", "other", "bad"]
#: Why an event was rejected: ``parse`` (not UTF-8 JSON), ``schema`` (not an
#: event the intake can stamp), ``size`` (too large), ``application`` (not an
#: application the client token may send for).
Reason = Literal["parse", "schema", "size", "application"]
REASONS: tuple[Reason, ...] = ("parse", "schema", "size", "application")


@dataclass(frozen=True, slots=True)
class Record:
    """One event ready for Kafka: where it goes, its key (``session.id``) and its bytes."""

    route: Route
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event the intake refused: its position in the body, the reason, a message and its bytes."""

    position: int
    reason: Reason
    message: str
    #: The event's own bytes as the client sent them (its line, or its array element).
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Stamps:
    """What the intake adds to every event of one request."""

    #: Client address (from the TCP peer or a trusted X-Forwarded-For), if known.
    client_ip: str | None
    #: The request's User-Agent header, used when the event carries none.
    user_agent: str | None
    #: Receive time of the request, milliseconds since the Unix epoch.
    received_at: int
    #: Application the client token is for (None or ``*``: any application).
    application: str | None = None
    #: Keep a ``network.client.ip`` the event already has (server-side producers).
    keep_event_ip: bool = False


@dataclass
class Batch:
    """The outcome of one request body: records to produce and rejected events."""

    records: list[Record] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class _Rejected(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message


#: From a line's first non-blank byte to its end: blank lines are skipped by the regex engine, in C.
_CONTENT = re.compile(rb"\S[^\n]*")


def ndjson_lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines of a newline-delimited body with their 1-based line numbers (a final CR dropped).

    Work is linear in the body and Python-level only per non-blank line: a
    small compressed body that inflates to megabytes of blank lines costs
    milliseconds, not seconds.
    """
    number, position = 1, 0
    for match in _CONTENT.finditer(body):
        start = match.start()
        number += body.count(b"\n", position, start)
        line = body[body.rfind(b"\n", position, start) + 1 : match.end()]
        if line.endswith(b"\r"):
            line = line[:-1]
        position = match.end()
        yield number, line


def parse_ndjson(body: bytes, stamps: Stamps, max_event_bytes: int) -> Batch:
    """Records and rejections of an SDK batch (one JSON event per line; blank lines ignored)."""
    batch = Batch()
    for number, line in ndjson_lines(body):
        try:
            if len(line) >= max_event_bytes:
                raise _Rejected("size", f"event is {len(line)} bytes; the limit is under {max_event_bytes}")
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise _Rejected("parse", f"not valid JSON: {exc.msg} at column {exc.colno}") from None
            batch.records.append(stamp_event(event, stamps))
        except _Rejected as rejected:
            batch.rejections.append(Rejection(number, rejected.reason, rejected.message, line))
    return batch


def parse_actions(body: bytes, stamps: Stamps, max_event_bytes: int) -> Batch:
    """Records and rejections of a server-side body: one action object or a JSON array of them.

    A missing ``type`` means ``action``; positions are 0-based array indexes.
    Raises ValueError when the body as a whole is not JSON or not an object/array.
    """
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if isinstance(parsed, dict):
        items: list[Any] = [parsed]
    elif isinstance(parsed, list):
        items = parsed
    else:
        raise ValueError("body must be one action object or a JSON array of them")
    batch = Batch()
    elements: list[bytes] | None = None  # each item's bytes, found only when one is rejected
    for index, item in enumerate(items):
        try:
            if isinstance(item, dict):
                item.setdefault("type", "action")
                if item["type"] != "action":
                    raise _Rejected("schema", f"type must be action here, got {item['type']!r}")
                size = len(orjson.dumps(item))
                if size >= max_event_bytes:
                    raise _Rejected("size", f"event is {size} bytes; the limit is under {max_event_bytes}")
            batch.records.append(stamp_event(item, stamps))
        except _Rejected as rejected:
            if elements is None:
                elements = array_elements(body) if isinstance(parsed, list) else [body.strip()]
            batch.rejections.append(Rejection(index, rejected.reason, rejected.message, elements[index]))
    return batch


# A JSON string (escapes included) or one structural character: the tokens
# that decide where a top-level array element ends.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


def array_elements(body: bytes) -> list[bytes]:
    """The bytes of each element of a JSON array body, surrounding whitespace removed.

    ``body`` must be valid JSON holding an array (the caller parsed it): the
    elements are then split at the commas outside strings and nested values.
    """
    elements: list[bytes] = []
    depth = 0
    start = -1
    for token in _JSON_TOKENS.finditer(body):
        char = token.group()[:1]
        if char == b'"':
            continue
        if char in (b"[", b"{"):
            depth += 1
            if depth == 1:
                start = token.end()
        elif char in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                last = body[start : token.start()].strip()
                if last or elements:
                    elements.append(last)
                break
        elif depth == 1:  # a comma between two top-level elements
            elements.append(body[start : token.start()].strip())
            start = token.end()
    return elements


def _object(event: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    """The object at ``event[name]``, created when absent; rejects a non-object value."""
    value = event.get(name)
    if value is None:
        value = event[name] = {}
    elif not isinstance(value, dict):
        raise _Rejected("schema", f"{path} must be an object, got {type(value).__name__}")
    return value


def stamp_event(event: Any, stamps: Stamps) -> Record:
    """Check, stamp and route one parsed event (see the module docstring); raises _Rejected."""
    if not isinstance(event, dict):
        raise _Rejected("schema", f"an event is a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise _Rejected("schema", "an event needs a string type (action, view, resource, error, ...)")
    if stamps.application and stamps.application != ANY_APPLICATION:
        application = _object(event, "application", "application")
        given = application.get("id")
        if given is None:
            application["id"] = stamps.application
        elif given != stamps.application:
            raise _Rejected(
                "application", f"application.id {given!r} is not the application of this client token"
            )
    if stamps.client_ip is not None:
        client = _object(_object(event, "network", "network"), "client", "network.client")
        if not (stamps.keep_event_ip and isinstance(client.get("ip"), str)):
            client["ip"] = stamps.client_ip
    if stamps.user_agent is not None:
        http = _object(event, "http", "http")
        if not isinstance(http.get("useragent"), str):
            http["useragent"] = stamps.user_agent
    _fill_from_ddtags(event)
    # The intake's own receive time; "date" stays the client's event time.
    event["intake"] = {"received_at": stamps.received_at}
    return Record(route_of(event), _session_key(event), orjson.dumps(event))


#: Top-level fields the Datadog SDK may send only as ``ddtags`` (``env`` is one: it is never top-level).
TAGGED_FIELDS = ("env", "service", "version")


def _fill_from_ddtags(event: dict[str, Any]) -> None:
    """Copy ``env``, ``service`` and ``version`` from ``ddtags`` ("k:v,k:v") where the event lacks them."""
    tags = event.get("ddtags")
    if not isinstance(tags, str):
        return
    for tag in tags.split(","):
        name, sep, value = tag.strip().partition(":")
        if sep and value and name in TAGGED_FIELDS and not isinstance(event.get(name), str):
            event[name] = value


def route_of(event: dict[str, Any]) -> Route:
    """``raw`` for custom actions (and actions without an action type), ``other`` for the rest.

    The SDKs also send click, tap, scroll and swipe actions (automatic user
    interactions): the raw topic's schema accepts custom actions only, so those
    go with views, resources and errors to the other topic instead of
    becoming bad rows.
    """
    if event.get("type") != "action":
        return "other"
    action = event.get("action")
    if isinstance(action, dict) and action.get("type", "custom") != "custom":
        return "other"
    return "raw"


def _session_key(event: dict[str, Any]) -> bytes | None:
    session = event.get("session")
    sid = session.get("id") if isinstance(session, dict) else None
    return sid.encode() if isinstance(sid, str) else None
