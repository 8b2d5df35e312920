"""Referrer and campaign enrichment: where a visit came from.

Runs after ``page``, whose ``view.url_host``, ``view.url_query`` and
``view.referrer_host`` it reads, and adds to ``view``:

- ``referrer_path``: the path of ``view.referrer`` (``"/"`` when it has a host
  and no path), at most ``MAX_PATH_CHARS`` characters;
- ``referrer_type``: ``direct`` (no referrer), ``internal`` (the referrer's
  registrable domain is the page's), ``search``, ``social``, ``email`` (known
  sites and apps, :data:`HOSTS` and :data:`BRANDS`) or ``referral`` (any
  other site);
- ``campaign``: ``source``, ``medium``, ``name``, ``term``, ``content`` from the
  page URL's ``utm_source``, ``utm_medium``, ``utm_campaign``, ``utm_term`` and
  ``utm_content``; absent when the URL has none of them.

The registrable domain is approximated without the public suffix list: the
last two labels of the host, or three when the top level is a two-letter
country code under a common second level (``shop.example.co.uk`` ->
``example.co.uk``).

Hostile input: a referrer path or a campaign value longer than its limit is
cut, and a ``utm_*`` parameter given several times keeps its first value,
each with a warning; a referrer that is not a string or cannot be parsed
(``page`` warns about it) gets no ``referrer_*`` field here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pipeline.enrich.base import MetricSpec, Plugin, Warning, object_schema, string_schema
from pipeline.enrich.page import MAX_URL_CHARS
from pipeline.enrich.url import prepare

#: Characters of the referrer path kept; longer ones are cut, with a warning.
MAX_PATH_CHARS = 2048
#: Characters of one campaign value kept; longer ones are cut, with a warning.
MAX_CAMPAIGN_CHARS = 256
#: Page URL query parameter -> ``view.campaign`` key.
CAMPAIGN_KEYS = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}
TYPES = ("direct", "internal", "search", "social", "email", "referral")

#: Hosts (and their subdomains) of a known kind; looked up before :data:`BRANDS`, so
#: that Gmail is email although Google is search. Android apps send their package name.
HOSTS = {
    "mail.google.com": "email",
    "inbox.google.com": "email",
    "com.google.android.gm": "email",
    "outlook.live.com": "email",
    "outlook.office.com": "email",
    "outlook.office365.com": "email",
    "mail.yahoo.com": "email",
    "mail.aol.com": "email",
    "mail.proton.me": "email",
    "mail.zoho.com": "email",
    "mail.yandex.ru": "email",
    "search.brave.com": "search",
    "com.google.android.googlequicksearchbox": "search",
    "t.co": "social",
    "lnkd.in": "social",
    "t.me": "social",
    "com.facebook.katana": "social",
    "com.linkedin.android": "social",
    "com.reddit.frontpage": "social",
}
#: Registrable-domain names (``google`` of ``www.google.co.uk``) of a known kind, any top level.
BRANDS = {
    **dict.fromkeys(
        ("google", "bing", "yahoo", "duckduckgo", "yandex", "baidu", "ecosia", "qwant", "startpage"),
        "search",
    ),
    "naver": "search",
    "seznam": "search",
    **dict.fromkeys(
        (
            "facebook",
            "instagram",
            "twitter",
            "x",
            "linkedin",
            "pinterest",
            "reddit",
            "tiktok",
            "youtube",
            "whatsapp",
            "snapchat",
            "tumblr",
            "vk",
            "weibo",
            "threads",
            "mastodon",
            "bsky",
        ),
        "social",
    ),
}
#: Second levels under which a country code's registrations sit (co.uk, com.au, ne.jp...).
_SECOND_LEVELS = frozenset(
    ("co", "com", "net", "org", "gov", "edu", "ac", "ne", "or", "go", "gob", "ltd", "plc")
)
#: Referrers at most this long are remembered (``ReferrerEnrichment``'s cache).
_CACHED_CHARS = 1024
#: Labels of a host tried against :data:`HOSTS`, from the full host up: real hosts have a few.
_MAX_SUFFIXES = 8

#: The enriched action's ``$defs`` this enrichment writes: its part of ``view``.
SCHEMA: dict[str, Any] = {
    "view": {
        "properties": {
            "referrer_path": string_schema(
                f"Path of the referrer URL (/ when it has none), at most {MAX_PATH_CHARS} characters."
            ),
            "referrer_type": string_schema(
                "Where the visit came from: direct (no referrer), internal (same registrable domain as the "
                "page), search, social or email (known sites and apps), referral (any other site).",
                enum=list(TYPES),
            ),
            "campaign": object_schema(
                f"The page URL's utm_* parameters, each at most {MAX_CAMPAIGN_CHARS} characters. Absent "
                "when the URL has none.",
                {
                    "source": string_schema("utm_source, e.g. newsletter."),
                    "medium": string_schema("utm_medium, e.g. email or cpc."),
                    "name": string_schema("utm_campaign, e.g. spring_sale."),
                    "term": string_schema("utm_term: the paid search keywords."),
                    "content": string_schema("utm_content: which link or ad variant was followed."),
                },
                additionalProperties=False,
            ),
        }
    }
}

METRICS = (
    *(
        MetricSpec(kind, "rum_referrer_actions", "Enriched actions per referrer type.", labels={"type": kind})
        for kind in TYPES
    ),
    MetricSpec("campaigns", "rum_campaign_actions", "Enriched actions whose page URL has utm_* parameters."),
)


def registrable_domain(host: str) -> str:
    """The site a host belongs to, approximately (see the module docstring); an IP address is itself."""
    if ":" in host or host.replace(".", "").isdigit():
        return host
    labels = host.rsplit(".", 3)
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVELS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def host_type(host: str) -> str | None:
    """``search``, ``social`` or ``email`` for a known host or app, else None."""
    suffix = host
    for _ in range(_MAX_SUFFIXES):
        kind = HOSTS.get(suffix)
        if kind is not None:
            return kind
        dot = suffix.find(".")
        if dot == -1:
            break
        suffix = suffix[dot + 1 :]
    if host.startswith(("mail.", "webmail.")):
        return "email"
    return BRANDS.get(registrable_domain(host).partition(".")[0])


def referrer_type(referrer_host: str, page_host: str | None) -> str:
    """How a visit from ``referrer_host`` to a page on ``page_host`` is counted."""
    if page_host and registrable_domain(referrer_host) == registrable_domain(page_host):
        return "internal"
    return host_type(referrer_host) or "referral"


def referrer_fields(referrer: str, host: str, page_host: str | None) -> tuple[str, str | None, int]:
    """The referrer type, the path (cut to ``MAX_PATH_CHARS``; None if unreadable) and its full length."""
    kind = referrer_type(host, page_host)
    try:
        path = urlsplit(prepare(referrer[:MAX_URL_CHARS])).path or "/"
    except ValueError:
        return kind, None, 0
    return kind, path[:MAX_PATH_CHARS], len(path)


class ReferrerEnrichment(Plugin):
    """Adds ``view.referrer_path``, ``view.referrer_type`` and ``view.campaign``."""

    name: ClassVar[str] = "referrer"
    schema: ClassVar[Mapping[str, Any]] = SCHEMA
    metrics: ClassVar[tuple[MetricSpec, ...]] = METRICS

    def __init__(self, cache_size: int = 4096) -> None:
        self._counts = dict.fromkeys((*TYPES, "campaigns", "warnings"), 0)
        # A site's visits come from a few referrers, and splitting a URL costs
        # microseconds: remember the results (C-implemented LRU, short keys only).
        self._fields = functools.lru_cache(maxsize=cache_size)(referrer_fields)

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        """Add the referrer and campaign fields to ``event["view"]``."""
        view = event.get("view")
        if type(view) is not dict:
            return  # no view, or one page already warned about
        query = view.get("url_query")
        if type(query) is dict and not query.keys().isdisjoint(CAMPAIGN_KEYS):
            self._add_campaign(view, query, warnings)
        referrer = view.get("referrer")
        if referrer is None or referrer == "":
            view["referrer_type"] = "direct"
            self._counts["direct"] += 1
            return
        host = view.get("referrer_host")
        if type(referrer) is not str or type(host) is not str:
            return  # not a string, or no host could be read: page has warned
        page_host = view.get("url_host")
        if len(referrer) <= _CACHED_CHARS:
            kind, path, length = self._fields(referrer, host, page_host)
        else:
            kind, path, length = referrer_fields(referrer, host, page_host)
        view["referrer_type"] = kind
        self._counts[kind] += 1
        if path is None:
            return  # page parsed the host from the same text; kept for safety
        if length > MAX_PATH_CHARS:
            cut = f"referrer path is {length} characters; the first {MAX_PATH_CHARS} kept"
            self._warn(warnings, "view.referrer", cut)
        view["referrer_path"] = path

    def _add_campaign(self, view: dict[str, Any], query: dict[str, Any], warnings: list[Warning]) -> None:
        campaign: dict[str, str] = {}
        for parameter, key in CAMPAIGN_KEYS.items():
            value = query.get(parameter)
            if value is None:
                continue
            path = f"view.url_query.{parameter}"
            if type(value) is list:
                self._warn(warnings, path, f"given {len(value)} times; the first value kept")
                value = value[0]
            if type(value) is not str or value == "":
                continue
            if len(value) > MAX_CAMPAIGN_CHARS:
                cut = f"{len(value)} characters; the first {MAX_CAMPAIGN_CHARS} kept in view.campaign.{key}"
                self._warn(warnings, path, cut)
                value = value[:MAX_CAMPAIGN_CHARS]
            campaign[key] = value
        if campaign:
            existing = view.get("campaign")
            if type(existing) is dict:
                existing.update(campaign)  # a producer's own campaign fields stay; ours win
            else:
                view["campaign"] = campaign
            self._counts["campaigns"] += 1

    def _warn(self, warnings: list[Warning], path: str, message: str) -> None:
        self._counts["warnings"] += 1
        warnings.append({"enrichment": self.name, "path": path, "message": message})

    def stats(self) -> dict[str, float]:
        """Actions per referrer type, actions with a campaign, warnings."""
        return dict(self._counts)
