"""Page enrichment: split ``view.url`` into the ``view.url_*`` fields.

Added to ``view`` (each only when it has a value):

- ``url_scheme``: lowercase scheme, e.g. ``"https"``
- ``url_host``: lowercase host name without port (IPv6 without brackets)
- ``url_port``: the port as an int, only when the URL names one
- ``url_path``: the path, ``"/"`` when a URL with a host has none
- ``url_path_group``: the path with id-like segments replaced by ``?``
- ``url_query``: object of query parameters (decoded; a repeated key gives a
  list of its values in order; blank values are kept as ``""``); omitted when
  the URL has no query
- ``url_hash``: the fragment without ``#``; omitted when empty
- ``referrer_host``: lowercase host name of ``view.referrer``

URLs are read as browsers read them (:mod:`pipeline.enrich.url`): hosts in
their ASCII IDNA form, ``\\`` as a path separator for http(s), ws(s) and ftp.

Limits, each reported as a warning in ``pipeline.warnings`` (the action is kept):

- ``user:password@`` in ``view.url`` or ``view.referrer`` is removed from the
  value itself, as Datadog does: no downstream copy keeps the credentials;
- a URL longer than ``MAX_URL_CHARS`` gives the ``url_*`` fields of its first
  ``MAX_URL_CHARS`` characters (``view.url`` itself is kept whole), and one
  with more than ``MAX_QUERY_PAIRS`` query parameters those of the URL up to
  the last parameter read;
- ``url_query`` keeps the first parameters only, as many as leave the action
  within ``max_attributes`` attributes once the enrichments' own fields
  (``ENRICHMENT_ATTRIBUTES``) are counted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urlsplit

from pipeline.enrich.base import Plugin, Warning, object_schema, string_schema
from pipeline.enrich.url import normalise_host, prepare, strip_credentials

if TYPE_CHECKING:
    from pipeline.settings import Settings

#: Characters of a URL the ``url_*`` fields are derived from. Each field is
#: then at most this long, so enrichment adds a bounded amount to an action.
MAX_URL_CHARS = 16 * 1024
#: Query parameters read at most. Reading one costs about as much as a tenth
#: of a whole clean action, so this bounds what a URL of thousands of
#: parameters (or of thousands of repeated keys, a list each) costs: about ten
#: clean actions. Real page URLs carry a few dozen.
MAX_QUERY_PAIRS = 256
#: Attributes kept free for the fields the enrichments and the pipeline add
#: (view.url_*, the referrer and campaign fields, geo, browser, os, device,
#: pipeline and a few warnings): all of them with three warnings take 64.
ENRICHMENT_ATTRIBUTES = 80
#: Queries with at most this many parameters skip counting the action's attributes.
_FEW_PARAMETERS = 64

#: A path segment that identifies one object rather than a kind of page: a
#: numeric id, a UUID, a hex string of 16+ characters (hashes, Mongo ids...) or
#: an opaque alphanumeric token longer than 20 characters mixing letters and
#: digits. Hyphenated segments only match as UUIDs: a slug such as
#: ``summer-sale-2024`` names a page and keeps its words. Matching the leading
#: "/" (rather than looking behind for it) lets the engine jump from slash to slash.
_ID_SEGMENT = re.compile(
    r"/(?:\d+"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}"
    r"|(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{21,})"
    r"(?=/|$)",
    re.ASCII,
)

#: The common shape of a page URL: scheme://host[:port][/path][?query][#fragment]
#: with a plain ASCII host (no user info, IPv6 literal, "%" or non-ASCII) and no
#: control or space characters. For such a URL one regex gives the same parts
#: as urllib.parse.urlsplit, about five times faster; any other string goes
#: through urlsplit.
_SIMPLE_URL = re.compile(
    r"([A-Za-z][A-Za-z0-9+.\-]*)://"
    r"([A-Za-z0-9._~!$&'()*+,;=\-]+)"
    r"(?::([0-9]{0,5}))?"
    r"(/[^?#\\\x00-\x20\x7f]*)?"
    r"(?:\?([^#\x00-\x20\x7f]*))?"
    r"(?:#([^\x00-\x20\x7f]*))?"
)


#: The enriched action's ``$defs`` this enrichment writes: its part of ``view``.
SCHEMA: dict[str, Any] = {
    "view": object_schema(
        "The raw view plus the parts of its URL and referrer.",
        {
            "url_scheme": string_schema("URL scheme, e.g. https."),
            "url_host": string_schema(
                "Host name of the URL, lower case, international names in their ASCII (IDNA, xn--) form, "
                "read as a browser reads it."
            ),
            "url_port": {
                "description": "Port written in the URL, when there is one.",
                "type": "integer",
                "minimum": 0,
                "maximum": 65535,
            },
            "url_path": string_schema("Path of the URL."),
            "url_path_group": string_schema("Path with ids and hashes replaced by ?, e.g. /orders/?/items."),
            "url_query": {
                "description": "Query string parameters (utm_* included). A parameter given once is a "
                "string, one given several times is an array of strings.",
                "type": "object",
                "additionalProperties": {"type": ["string", "array"], "items": {"type": "string"}},
            },
            "url_hash": string_schema("Fragment of the URL, without the #."),
            "referrer_host": string_schema("Host name of the referrer URL."),
        },
    )
}


def path_group(path: str) -> str:
    """``path`` with every id-like segment replaced by ``?``.

    >>> path_group("/product/12345/reviews")
    '/product/?/reviews'
    """
    return _ID_SEGMENT.sub("/?", path)


def query_object(query: str) -> dict[str, str | list[str]]:
    """Decode a query string into ``{key: value}``; a repeated key maps to the list of its values.

    Pairs are those of ``urllib.parse.parse_qsl(query, keep_blank_values=True)``,
    computed without decoding the (usual) parts that need none.
    """
    if "%" not in query and "+" not in query:
        # Nothing to decode: when no key repeats (the usual case) the dict
        # is built in C; otherwise the pairs already split are grouped.
        pairs = [pair.partition("=") for pair in query.split("&") if pair]
        simple: dict[str, str | list[str]] = {key: value for key, _, value in pairs}
        if len(simple) == len(pairs):
            return simple
        return _grouped(pairs)
    decoded = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = unquote(key.replace("+", " "))
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "))
        decoded.append((key, "=", value))
    return _grouped(decoded)


def _grouped(pairs: list[tuple[str, str, str]]) -> dict[str, str | list[str]]:
    """``{key: value}`` of ``(key, _, value)`` triples (``str.partition``'s), a repeated key
    mapping to the list of its values, in order."""
    params: dict[str, str | list[str]] = {}
    get = params.get
    for key, _, value in pairs:
        previous = get(key)
        if previous is None:
            params[key] = value
        elif type(previous) is list:
            previous.append(value)
        else:
            params[key] = [previous, value]  # type: ignore[list-item]
    return params


def _fields(
    scheme: str, host: str | None, port: int | None, path: str, query: str, fragment: str
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if scheme:
        fields["url_scheme"] = scheme
    if host:
        fields["url_host"] = host
    if port is not None:
        fields["url_port"] = port
    # Browsers report "https://shop.example" as "https://shop.example/".
    if not path and host:
        path = "/"
    if path:
        fields["url_path"] = path
        fields["url_path_group"] = path_group(path)
    if query:
        fields["url_query"] = query_object(query)
    if fragment:
        fields["url_hash"] = fragment
    return fields


def _urllib_url_fields(url: str) -> dict[str, Any]:
    parts = urlsplit(prepare(url))
    # .port raises ValueError for a non-numeric or out-of-range port.
    port = parts.port
    host = parts.hostname
    if host:
        host = normalise_host(host)
    return _fields(parts.scheme, host, port, parts.path, parts.query, parts.fragment)


def url_fields(url: str) -> dict[str, Any]:
    """The ``url_*`` fields of one URL; raise ValueError when it cannot be parsed."""
    match = _SIMPLE_URL.fullmatch(url)
    if match is None:
        return _urllib_url_fields(url)
    scheme, host, port_text, path, query, fragment = match.groups()
    port = int(port_text) if port_text else None
    if port is not None and port > 65535:
        return _urllib_url_fields(url)  # raises the usual "Port out of range"
    return _fields(scheme.lower(), host.lower(), port, path or "", query or "", fragment or "")


def url_host(url: str) -> str | None:
    """Lowercase host name of ``url``, None when it has none; raise ValueError when it cannot be parsed."""
    match = _SIMPLE_URL.fullmatch(url)
    if match is not None:
        return match[2].lower() or None
    host = urlsplit(prepare(url)).hostname
    return normalise_host(host) if host else None


def count_attributes(value: Any) -> int:
    """Object keys in ``value`` at any depth (the validator's attribute count)."""
    count = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            count += len(node)
            stack.extend(v for v in node.values() if type(v) is dict or type(v) is list)
        elif type(node) is list:
            stack.extend(v for v in node if type(v) is dict or type(v) is list)
    return count


class PageEnrichment(Plugin):
    """Adds the ``view.url_*`` fields and ``view.referrer_host``.

    A missing ``view``, ``view.url`` or ``view.referrer`` adds nothing and is
    not reported; a value that is not a string, or a URL that cannot be parsed,
    adds nothing for that value and is reported as a warning. The limits of
    the module docstring apply, each with its warning.
    """

    name: ClassVar[str] = "page"
    schema: ClassVar[Mapping[str, Any]] = SCHEMA

    def __init__(self, max_attributes: int = 1000) -> None:
        self.max_attributes = max_attributes
        self._events = 0
        self._warnings = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> PageEnrichment:
        """Build the enrichment; ``max_attributes`` bounds ``url_query``."""
        return cls(max_attributes=settings.worker.max_attributes)

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        """Add the page fields to ``event["view"]``; append a warning for an unusable URL."""
        self._events += 1
        view = event.get("view")
        if view is None:
            return
        if not isinstance(view, dict):
            self._warn(warnings, "view", f"expected an object, got {type(view).__name__}")
            return
        url = view.get("url")
        if url is not None:
            if not isinstance(url, str):
                self._warn(warnings, "view.url", f"expected a string, got {type(url).__name__}")
            else:
                url = self._without_credentials(view, "url", url, warnings)
                self._add_url_fields(event, view, url, warnings)
        referrer = view.get("referrer")
        if referrer is None or referrer == "":  # "" is the usual value for direct traffic
            return
        if not isinstance(referrer, str):
            self._warn(warnings, "view.referrer", f"expected a string, got {type(referrer).__name__}")
            return
        referrer = self._without_credentials(view, "referrer", referrer, warnings)
        try:
            host = url_host(referrer[:MAX_URL_CHARS])
        except ValueError as exc:
            self._warn(warnings, "view.referrer", f"cannot parse URL: {exc}")
            return
        if host:
            view["referrer_host"] = host

    def _without_credentials(self, view: dict[str, Any], key: str, url: str, warnings: list[Warning]) -> str:
        stripped = strip_credentials(url)
        if stripped is None:
            return url
        view[key] = stripped
        # The message never repeats the credentials.
        self._warn(warnings, f"view.{key}", "user name and password removed from the URL")
        return stripped

    def _add_url_fields(
        self, event: dict[str, Any], view: dict[str, Any], url: str, warnings: list[Warning]
    ) -> None:
        if len(url) > MAX_URL_CHARS:
            self._warn(
                warnings,
                "view.url",
                f"URL is {len(url)} characters; the url_* fields describe its first {MAX_URL_CHARS}",
            )
            url = url[:MAX_URL_CHARS]
        mark = url.find("?")
        if mark != -1 and url.count("&", mark) >= MAX_QUERY_PAIRS:
            pairs = url[mark + 1 :].split("&", MAX_QUERY_PAIRS)
            if len(pairs) > MAX_QUERY_PAIRS:
                self._warn(
                    warnings,
                    "view.url",
                    f"URL has more than {MAX_QUERY_PAIRS} query parameters; "
                    f"the url_* fields describe it up to parameter {MAX_QUERY_PAIRS}",
                )
                url = url[: mark + 1] + "&".join(pairs[:MAX_QUERY_PAIRS])
        try:
            fields = url_fields(url)
        except ValueError as exc:
            self._warn(warnings, "view.url", f"cannot parse URL: {exc}")
            return
        query = fields.get("url_query")
        if query is not None and len(query) > _FEW_PARAMETERS:
            room = max(0, self.max_attributes - ENRICHMENT_ATTRIBUTES - count_attributes(event))
            if len(query) > room:
                kept = dict(list(query.items())[:room])
                self._warn(
                    warnings,
                    "view.url_query",
                    f"{len(query)} query parameters; the first {room} kept, "
                    f"within the limit of {self.max_attributes} attributes",
                )
                fields["url_query"] = kept
        view.update(fields)

    def _warn(self, warnings: list[Warning], path: str, message: str) -> None:
        self._warnings += 1
        warnings.append({"enrichment": self.name, "path": path, "message": message})

    def stats(self) -> dict[str, float]:
        """Events seen and warnings emitted."""
        return {"events": self._events, "warnings": self._warnings}
