"""User-agent parsing: the ``browser``, ``os`` and ``device`` fields of one user agent.

For printable-ASCII user agents (every real browser's) the results are
exactly those of the ``user-agents`` package (``user_agents.parse``), whose
``UserAgent`` class also decides ``device.type``. That package runs up to
~1,300 Python regexes in order for an unknown user agent (~0.7 ms, and about
9 µs per character outside ASCII); :func:`parse_user_agent` gets the same
answer in a few microseconds with the Rust matcher of ``ua-parser-rs``.
The enrichment that caches and writes these fields is :mod:`pipeline.enrich.browser`.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from itertools import islice
from typing import Any

import ua_parser_rs
from ua_parser import user_agent_parser
from user_agents.parsers import UserAgent, parse_browser, parse_device, parse_operating_system

#: The finished fields of one user agent: ``browser``, ``os`` (absent when
#: unknown) and ``device``. Cached values are never handed out: callers copy.
UserAgentFields = dict[str, dict[str, Any]]

#: Line of the corpus file that stands for the empty user agent.
EMPTY_MARKER = "<empty>"

#: Characters of a user agent that are parsed, and kept in the enriched
#: action's ``http.useragent``; real ones stay under ~600, and the parse, the
#: cache key and every enriched copy must not grow with what a client sends.
MAX_PARSED_CHARS = 1024
#: Largest ``version_major`` written (a signed 32-bit int, which every
#: consumer can hold); JSON encoders refuse integers beyond 64 bits.
MAX_VERSION_MAJOR = 2**31 - 1

#: What a parse notes about one user agent: (path, message) warnings.
Notes = tuple[tuple[str, str], ...]


def load_user_agents() -> list[str]:
    """The bundled corpus of real (and a few malformed) user agents, one per line.

    The line ``<empty>`` stands for the empty string. Used by tests, the
    traffic generator and the benchmark.
    """
    text = resources.files("pipeline.data").joinpath("user_agents.txt").read_text(encoding="utf-8")
    return ["" if line == EMPTY_MARKER else line for line in text.splitlines()]


class _IndexedParsers:
    """One domain (browser, OS or device) of ua-parser's rule list, matched fast.

    The ``user-agents`` package takes the first rule, in list order, whose
    Python regex matches and whose family is not empty. ``ua-parser-rs``
    finds the first matching rule in microseconds but rewrites bounded
    repetitions of 100+ (``.{0,200}`` becomes ``.*``), so its regexes accept
    more strings than Python's, never fewer (for printable ASCII input, where
    its ASCII-only ``\\d``/``\\w`` agree with Python's). Hence no rule before
    the one it finds can match in Python: the scan starts at that rule and runs
    the Python rules themselves, so the captures and their quirks are exactly
    the reference's. Usually the first rule run is the answer.
    """

    def __init__(self, parsers: list[Any], extractor_type: type, with_flag: bool) -> None:
        self.parsers = parsers
        # Each rule's family is replaced by its index, so the extractor tells
        # which rule matched; its own captures are not used.
        rules: list[tuple[str | None, ...]] = []
        for index, parser in enumerate(parsers):
            regex = parser.user_agent_re
            if with_flag:
                flag = "i" if regex.flags & re.IGNORECASE else None
                rules.append((regex.pattern, flag, str(index), None, None))
            else:
                rules.append((regex.pattern, str(index), None, None, None, None))
        self.extractor = extractor_type(rules)

    def parse(self, ua: str) -> tuple[Any, ...] | None:
        """The reference's loop result: the first rule output with a family, else the last rule's."""
        found = self.extractor.extract(ua)
        if found is None:
            # No rule matches even with the looser regexes: the reference's
            # loop ends on the last rule's non-match.
            return None
        result = None
        for parser in islice(self.parsers, int(found.family), None):
            result = parser.Parse(ua)
            if result[0]:
                break
        return result


@functools.cache
def matchers() -> tuple[_IndexedParsers, _IndexedParsers, _IndexedParsers]:
    # Built once per process on first use (~0.2 s).
    return (
        _IndexedParsers(user_agent_parser.USER_AGENT_PARSERS, ua_parser_rs.UserAgentExtractor, False),
        _IndexedParsers(user_agent_parser.OS_PARSERS, ua_parser_rs.OSExtractor, False),
        _IndexedParsers(user_agent_parser.DEVICE_PARSERS, ua_parser_rs.DeviceExtractor, True),
    )


class _ParsedUserAgent(UserAgent):
    """A ``user_agents`` UserAgent built from already parsed parts.

    The classification properties (``is_bot``, ``is_mobile``...) are the
    package's own; only the regex work of its ``__init__`` is replaced.
    """

    def __init__(self, ua_string: str, parsed: dict[str, dict[str, Any]]) -> None:
        self.ua_string = ua_string
        self.os = parse_operating_system(**parsed["os"])
        self.browser = parse_browser(**parsed["user_agent"])
        self.device = parse_device(**parsed["device"])


def _fast_parse(ua: str) -> dict[str, dict[str, Any]]:
    """Same dict as ``ua_parser.user_agent_parser.Parse(ua)`` (printable ASCII input only)."""
    browsers, systems, devices = matchers()
    family, v1, v2, v3 = browsers.parse(ua) or (None, None, None, None)
    os_family, os_v1, os_v2, os_v3, os_v4 = systems.parse(ua) or (None, None, None, None, None)
    device, brand, model = devices.parse(ua) or (None, None, None)
    # The post-processing below mirrors user_agent_parser's _ParseUserAgent,
    # _ParseOS and _ParseDevice, quirks included (e.g. "" is kept as is).
    return {
        "user_agent": {
            "family": family or "Other",
            "major": v1 or None,
            "minor": v2 or None,
            "patch": v3 or None,
        },
        "os": {
            "family": os_family or "Other",
            "major": os_v1,
            "minor": os_v2,
            "patch": os_v3,
            "patch_minor": os_v4,
        },
        "device": {"family": "Other" if device is None else device, "brand": brand, "model": model},
    }


def is_fast_parsable(ua: str) -> bool:
    """Whether :func:`parse_user_agent` gives exactly ``user_agents.parse(ua)`` for ``ua``.

    Outside printable ASCII, Python's Unicode ``\\d``, ``\\w`` and ``\\s``
    match more than the Rust matcher's, so its answer is not always the
    reference's starting point.
    """
    return ua.isascii() and ua.isprintable()


def parse_user_agent(ua: str) -> UserAgent:
    """Parse ``ua`` in microseconds.

    For printable ASCII the result equals ``user_agents.parse(ua)`` in every
    attribute. For other strings the first matching rule is also the Rust
    matcher's (whose ``\\d``, ``\\w`` and ``\\s`` are ASCII-only), with the
    reference's own captures: a rule that would match only by reading a
    non-ASCII letter or digit as a word character is not chosen. The
    reference instead runs every rule in Python at ~9 µs per character.
    """
    return _ParsedUserAgent(ua, _fast_parse(ua))


def _known(value: Any) -> bool:
    return bool(value) and value != "Other"


def _named_version(
    family: str, version: tuple[Any, ...], version_string: str, path: str, notes: list[tuple[str, str]]
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if _known(family):
        fields["name"] = family
    if version_string:
        fields["version"] = version_string
    if version and isinstance(version[0], int):
        if version[0] <= MAX_VERSION_MAJOR:
            fields["version_major"] = version[0]
        else:
            digits = len(str(version[0]))
            notes.append(
                (
                    f"{path}.version_major",
                    f"major version of {digits} digits is beyond {MAX_VERSION_MAJOR}; "
                    "version_major left out, version keeps the text",
                )
            )
    return fields


def device_type(agent: UserAgent) -> str:
    """``bot``, ``tablet``, ``mobile``, ``desktop`` or ``other``, first that applies, per ``user_agents``."""
    if agent.is_bot:
        return "bot"
    if agent.is_tablet:
        return "tablet"
    if agent.is_mobile:
        return "mobile"
    if agent.is_pc:
        return "desktop"
    return "other"


def user_agent_fields(agent: UserAgent, notes: list[tuple[str, str]] | None = None) -> UserAgentFields:
    """The ``browser``, ``os`` and ``device`` objects for a parsed user agent.

    Unknown values (``None``, ``""``, ``"Other"``) are left out, and so is a
    ``browser`` or ``os`` object with nothing known; ``device.type`` is always set.
    A major version beyond ``MAX_VERSION_MAJOR`` is left out, noted in ``notes``.
    """
    notes = [] if notes is None else notes
    fields: UserAgentFields = {}
    browser = _named_version(
        agent.browser.family, agent.browser.version, agent.browser.version_string, "browser", notes
    )
    if browser:
        fields["browser"] = browser
    system = _named_version(agent.os.family, agent.os.version, agent.os.version_string, "os", notes)
    if system:
        fields["os"] = system
    device: dict[str, Any] = {"type": device_type(agent)}
    if _known(agent.device.brand):
        device["brand"] = agent.device.brand
    if _known(agent.device.model):
        device["model"] = agent.device.model
    if _known(agent.device.family):
        device["name"] = agent.device.family
    fields["device"] = device
    return fields
