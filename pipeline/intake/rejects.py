"""Bad rows for the events the intake refuses, so that no event is lost from the intake on.

An event refused inside a request that was otherwise answered (202, or 400
when every event was refused) is not sent again by the client. It becomes a
bad row of kind ``intake`` (``schemas/bad-row.v1.json``), written to the bad
topic together with the request's accepted events: its own bytes, why it was
refused, where it sat in the body, and who sent it (the client token's
application and the client address under the IP policy).

Whole requests refused before their events are read (403, 413, 415, a body
that is not valid deflate) produce no bad rows: the client is told, and an
unauthenticated body must not be able to write to Kafka.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from pipeline.badrows import make_intake_bad_row
from pipeline.enrich.ip import truncate_ip
from pipeline.intake.config import ANY_APPLICATION
from pipeline.intake.events import Record, Rejection
from pipeline.settings import IpPolicy


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the bad rows of one request say about it."""

    #: The endpoint (``/api/v2/rum``, also in proxy mode, or ``/v1/actions``).
    endpoint: str
    #: The intake's identifier of the request.
    request_id: str
    #: ``line`` (1-based, newline-delimited bodies) or ``index`` (0-based, JSON arrays).
    position: Literal["line", "index"]
    #: The client token's application (None or ``*``: any application).
    application: str | None
    #: The client address as the intake saw it, before the IP policy.
    client_ip: str | None
    #: Receive time of the request, milliseconds since the Unix epoch.
    received_at: int


def apply_ip_policy(ip: str | None, policy: IpPolicy) -> str | None:
    """The address a bad row may keep: as is, truncated (/24, /48) or none."""
    if ip is None or policy is IpPolicy.drop:
        return None
    if policy is IpPolicy.truncate:
        return truncate_ip(ip)  # None when it is not an address: it must not leak either
    return ip


def bad_row_records(rejections: Sequence[Rejection], request: RequestInfo, policy: IpPolicy) -> list[Record]:
    """One bad-topic record per refused event (no key: the event's session is not trusted)."""
    application = None if request.application == ANY_APPLICATION else request.application
    client_ip = apply_ip_policy(request.client_ip, policy)
    records = []
    for rejection in rejections:
        source = {
            "endpoint": request.endpoint,
            "request_id": request.request_id,
            request.position: rejection.position,
            "reason": rejection.reason,
            "application": application,
            "client_ip": client_ip,
            "received_at": request.received_at,
        }
        errors = [("$", f"{rejection.reason}: {rejection.message}")]
        row = make_intake_bad_row(errors, rejection.payload, source, request.received_at)
        records.append(Record("bad", None, orjson.dumps(row)))
    return records
