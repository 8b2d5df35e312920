"""URL reading as browsers do it: the WHATWG URL standard's rules the page enrichment needs.

``urllib.parse`` follows RFC 3986, which differs from what a browser makes of
the same string in ways that matter for facets and for privacy:

- for the special schemes (http, https, ws, wss, ftp), ``\\`` is a path
  separator and any run of slashes after the scheme introduces the host, so
  ``https://shop.example\\evil.example/`` is a page of ``shop.example``;
- leading and trailing spaces and control characters are ignored, and tabs
  and newlines anywhere are removed;
- a host is percent-decoded and mapped to its ASCII form by UTS #46 (IDNA),
  so ``BÜCHER.example`` and ``xn--bcher-kva.example`` are one host.

:func:`prepare` rewrites a string so that ``urlsplit`` reads it the browser's
way; :func:`normalise_host` gives the host's ASCII form;
:func:`strip_credentials` removes ``user:password@`` from a URL, leaving
every other character as it was.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

import idna

#: Schemes whose URLs always have a host and read ``\\`` as ``/`` (``file`` has
#: its own host rules and is left to urlsplit).
SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
#: What the standard ignores around a URL (C0 controls and space) and removes inside it.
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")


def prepare(url: str) -> str:
    """``url`` rewritten so that ``urllib.parse.urlsplit`` finds the parts a browser would.

    For a special scheme the part before the query or fragment gets ``/``
    for every ``\\`` and exactly two slashes before the host. Other URLs only
    lose their surrounding controls, tabs and newlines.
    """
    url = _TAB_OR_NEWLINE.sub("", url.strip(_C0_AND_SPACE))
    match = _SCHEME.match(url)
    if match is None or match[0][:-1].lower() not in SPECIAL_SCHEMES:
        return url
    scheme, rest = match[0], url[match.end() :]
    cut = len(rest)
    for mark in "?#":
        index = rest.find(mark)
        if index != -1 and index < cut:
            cut = index
    head = rest[:cut].replace("\\", "/")
    return f"{scheme}//{head.lstrip('/')}{rest[cut:]}"


def normalise_host(host: str) -> str:
    """The ASCII (punycode) lower-case form of ``host``; raise ValueError if it is no valid name.

    ASCII hosts are only lower-cased (IPv6 literals, underscores and other
    names DNS tolerates stay as they are). Others are percent-decoded, mapped
    by UTS #46 (full-width dots, case, compatibility forms) and each
    non-ASCII label encoded as an ``xn--`` label.
    """
    if (host.isascii() and "%" not in host) or ":" in host:
        return host.lower()  # plain names, and IPv6 literals (with or without a zone)
    if len(host) <= MAX_CACHED_HOST_CHARS:
        return _cached_idna_host(host)
    return _idna_host(host)


#: International hosts up to this long (a DNS name's limit, with room for
#: percent-escapes) have their ASCII form cached: the UTS #46 mapping costs
#: about 20 µs a host, and an international site sends its own host on every
#: action. Bounded in entries and so in bytes (at most ~4 KB an entry, 4 MB in all).
MAX_CACHED_HOST_CHARS = 512
_HOST_CACHE_ENTRIES = 1024


def _idna_host(host: str) -> str:
    try:
        decoded = unquote(host, errors="strict") if "%" in host else host
        mapped = idna.uts46_remap(decoded, std3_rules=False, transitional=False)
        labels = [
            label if label.isascii() else idna.alabel(label).decode("ascii") for label in mapped.split(".")
        ]
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"host is not a valid domain name ({exc})") from None
    return ".".join(labels).lower()


# A host that is no valid name raises, and raising is not cached: it costs its
# mapping each time, as before.
_cached_idna_host = functools.lru_cache(maxsize=_HOST_CACHE_ENTRIES)(_idna_host)


def strip_credentials(url: str) -> str | None:
    """``url`` without its ``user:password@`` part, or None when it has none.

    Only the user information is cut out; every other character stays. The
    host starts after the last ``@`` of the authority, as in browsers.
    """
    if "@" not in url:
        return None
    match = _SCHEME.match(url)
    special = match is not None and match[0][:-1].lower() in SPECIAL_SCHEMES
    start = match.end() if match is not None else 0
    slashes = "/\\" if special else "/"
    index = start
    while index < len(url) and url[index] in slashes:
        index += 1
    if not special and index - start < 2:
        return None  # no authority: the "@" of an opaque URL (mailto:) is not a password
    ends = "/?#\\" if special else "/?#"
    end = index
    while end < len(url) and url[end] not in ends:
        end += 1
    at = url.rfind("@", index, end)
    if at == -1:
        return None
    return url[:index] + url[at + 1 :]
