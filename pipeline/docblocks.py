"""Generated blocks inside Markdown pages: ``<!-- KIND:NAME -->`` ... ``<!-- /KIND:NAME -->``.

Figures and reference tables are written by a program (the benchmark suite, the
settings model) and copied into the pages that show them, between such markers,
so that nobody retypes them. This module only finds and replaces those blocks;
what goes inside is the business of its callers.
"""

from __future__ import annotations

import re

_BLOCK = re.compile(
    r"<!-- (?P<kind>[a-z]+):(?P<name>[a-z0-9_-]+) -->\n(?P<body>.*?)<!-- /(?P=kind):(?P=name) -->",
    re.DOTALL,
)


def find_blocks(text: str, kind: str) -> dict[str, str]:
    """The body of every ``kind`` block of ``text`` by name (the body ends with its newline).

    A name marked twice keeps its first body; :func:`check_unique` reports that case.
    """
    found: dict[str, str] = {}
    for match in _BLOCK.finditer(text):
        if match["kind"] == kind:
            found.setdefault(match["name"], match["body"])
    return found


def names_marked(text: str, kind: str) -> list[str]:
    """Every ``kind`` block name opened in ``text``, in order, duplicates included.

    Counts opening markers, closed or not, so that a block whose end marker was
    lost is still noticed by the caller comparing this with :func:`find_blocks`.
    """
    return re.findall(rf"<!-- {re.escape(kind)}:([a-z0-9_-]+) -->", text)


def replace_block(text: str, kind: str, name: str, body: str) -> str:
    """``text`` with the body of block ``kind:name`` replaced by ``body``.

    Raises KeyError when the page has no such block: a caller asking for one
    expects it to be there, and silently writing nothing would hide a typo.
    """
    if body and not body.endswith("\n"):
        body += "\n"
    done = False

    def swap(match: re.Match[str]) -> str:
        nonlocal done
        if match["kind"] != kind or match["name"] != name:
            return match[0]
        done = True
        return f"<!-- {kind}:{name} -->\n{body}<!-- /{kind}:{name} -->"

    out = _BLOCK.sub(swap, text)
    if not done:
        raise KeyError(f"no <!-- {kind}:{name} --> block")
    return out


def wrap(kind: str, name: str, body: str) -> str:
    """``body`` between the markers of block ``kind:name``."""
    if body and not body.endswith("\n"):
        body += "\n"
    return f"<!-- {kind}:{name} -->\n{body}<!-- /{kind}:{name} -->"
