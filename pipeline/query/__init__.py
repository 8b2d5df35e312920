"""Attribute paths and the RUM Explorer search syntax over enriched actions.

``parse_filter("@action.target.name:checkout @context.value:>10").matches(event)``
reads a decoded enriched action; the syntax is listed in :mod:`pipeline.query.filter`
and paths in :mod:`pipeline.query.paths`.

Matching rules, where Datadog leaves room:

- **Values are case-sensitive**, like facet values in Datadog (``Chrome`` is not
  ``chrome``); ``AND``, ``OR``, ``NOT`` are keywords in upper case only.
- **Free text is rejected** ("free-text search is not supported; use
  @attribute:value"): a custom action has no single message field to search.
  ``attr:value`` without ``@`` is rejected with a hint to add it.
- **Missing attributes**: a missing or ``null`` attribute never matches a
  positive term, so its negation (``-@attr:x``) matches.
- **Lists**: a term matches when ANY element matches; ``-@items:x`` therefore
  means "no element is x". An empty list counts as missing (``@items:*`` is false).
- **Numbers**: ``@v:42`` matches the numbers 42 and 42.0 and the string
  ``"42"``. Comparisons and numeric ranges match only JSON numbers: strings are
  never converted, so ``"42"`` is not ``>10`` (a string attribute is a facet,
  not a measure). Ranges whose bounds are not both numbers compare strings
  lexicographically. ``@flag:true`` matches the boolean. Wildcards match strings only.
- ``:``, ``(`` and ``"`` inside an unquoted value must be escaped (``\\:``),
  since they would otherwise be read as syntax; the error says so.
"""

from pipeline.query.filter import Filter, FilterSyntaxError, parse_filter
from pipeline.query.paths import MISSING, PathError, compile_path, compile_values, normalize_path, values_at

__all__ = [
    "MISSING",
    "Filter",
    "FilterSyntaxError",
    "PathError",
    "compile_path",
    "compile_values",
    "normalize_path",
    "parse_filter",
    "values_at",
]
