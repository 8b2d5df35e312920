"""The RUM Explorer search syntax, parsed once into a fast predicate.

Supported, as in Datadog: ``@attr:value`` (exact), ``*`` (any characters) and
``?`` (one character) wildcards, ``"quoted phrases"`` (wildcards literal inside),
``>10`` ``>=`` ``<`` ``<=``, ranges ``[10 TO 20]`` (inclusive) and ``{10 TO 20}``
(exclusive) with ``*`` as an open end, existence ``@attr:*``, implicit or explicit
``AND`` (binds tighter than ``OR``), ``OR``, ``-``/``NOT``, parentheses, and ``\\``
to escape the next character (``@view.url:https\\://shop.example/*``). An empty
filter or ``*`` matches everything.

The matching rules (case, free text, missing attributes, lists, numbers) are
documented in :mod:`pipeline.query`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from pipeline.errors import PipelineError
from pipeline.query.paths import PathError, compile_many, compile_values, normalize_path

__all__ = ["Filter", "FilterSyntaxError", "parse_filter"]

Predicate = Callable[[Any], bool]  # a compiled (sub-)filter: event -> bool
#: The same (sub-)filter for a list of events (objects) at once: one bool per event, in order.
ManyPredicate = Callable[[Sequence[dict[str, Any]]], list[bool]]
_Compiled = tuple[Predicate, ManyPredicate]
#: A term's test, applied to each value of its attribute: True or False itself, never another
#: truthy or falsy value (``matches_many`` joins results by identity).
Test = Callable[[Any], bool]
_TermSpec = tuple[str, Test | None]  # a term token's path and test (None: existence)
_Token = tuple[str, int, Any]  # kind ( ) AND OR NOT NEG STAR TERM END, column, payload

#: Deeper nesting than this is refused rather than risking a RecursionError.
MAX_DEPTH = 64


class FilterSyntaxError(PipelineError):
    """The filter text is not valid search syntax; ``column`` is 1-based."""

    def __init__(self, reason: str, column: int) -> None:
        super().__init__(f"{reason} at column {column}")
        self.reason = reason
        self.column = column


class Filter:
    """A parsed filter: ``text`` as written and a compiled ``matches(event)``."""

    __slots__ = ("_many", "_predicate", "paths", "text")

    def __init__(self, text: str, predicate: Predicate, paths: tuple[str, ...], many: ManyPredicate) -> None:
        self.text = text
        #: Attribute paths the filter reads, in order of first use.
        self.paths = paths
        self._predicate = predicate
        self._many = many

    def matches(self, event: Any) -> bool:
        """True when ``event`` (a decoded enriched action) satisfies the filter."""
        return self._predicate(event)

    def matches_many(self, events: Sequence[dict[str, Any]]) -> list[bool]:
        """``matches`` of each of ``events`` (objects, as enriched actions are), in order.

        A term reads its attribute of every event in one pass (``compile_many``)
        and tests a plain value directly; lists, objects and missing values take
        the per-event walk.
        """
        return self._many(events)

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


class _Lexer:
    """Turns the text into tokens; a whole ``@attr:value`` term is one token."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, reason: str, pos: int | None = None) -> FilterSyntaxError:
        return FilterSyntaxError(reason, (self.pos if pos is None else pos) + 1)

    def at_end(self) -> bool:
        """True at the end of the text or at a character that ends a word."""
        return self.pos >= len(self.text) or self.text[self.pos].isspace() or self.text[self.pos] in "()"

    def tokens(self) -> list[_Token]:
        text, out = self.text, list[_Token]()
        while True:
            while self.pos < len(text) and text[self.pos].isspace():
                self.pos += 1
            if self.pos >= len(text):
                out.append(("END", self.pos + 1, None))
                return out
            start, char = self.pos, text[self.pos]
            if char in "()":
                self.pos += 1
                out.append((char, start + 1, None))
            elif char == "-":
                nxt = text[start + 1 : start + 2]
                if not nxt or nxt.isspace() or nxt == ")":
                    raise self.error("'-' must be directly followed by a term")
                self.pos += 1
                out.append(("NEG", start + 1, None))
            elif char == "@":
                out.append(("TERM", start + 1, self.term()))
            else:
                out.append(self.word())

    def word(self) -> _Token:
        """A keyword, ``*``, or a bare word, which is an error (free text)."""
        start, text = self.pos, self.text
        while not self.at_end():
            self.pos += 1 + (text[self.pos] == "\\")
        word = text[start : self.pos]
        if word in ("AND", "OR", "NOT"):
            return (word, start + 1, None)
        if word == "*":
            return ("STAR", start + 1, None)
        if ":" in word and not word.startswith(('"', ":")):
            raise self.error(f"attributes start with '@': write '@{word}'", start)
        raise self.error(
            f"free-text search is not supported; use @attribute:value (got {word[:40]!r})", start
        )

    def term(self) -> _TermSpec:
        """``@path:value`` starting at ``@``."""
        text, at = self.text, self.pos
        self.pos += 1
        while not self.at_end() and text[self.pos] != ":":
            self.pos += 1
        raw_path = text[at : self.pos]
        if self.pos >= len(text) or text[self.pos] != ":":
            raise self.error(f"expected ':' after attribute {raw_path!r}")
        try:
            path = normalize_path(raw_path)
        except PathError as exc:
            raise self.error(f"bad attribute {raw_path!r}: {exc.reason}", at + exc.offset) from None
        self.pos += 1  # the ':'
        if self.at_end():
            raise self.error(f"expected a value after '{raw_path}:'")
        char = text[self.pos]
        if char == '"':
            return path, _exact_test(self.quoted())
        if char in "[{":
            return self.range(path)
        if char in "<>":
            return self.comparison(path)
        return self.unquoted(path)

    def quoted(self) -> str:
        text, start = self.text, self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(text) and text[self.pos] != '"':
            if text[self.pos] == "\\":
                self.pos += 1
                if self.pos >= len(text):
                    break
            chars.append(text[self.pos])
            self.pos += 1
        if self.pos >= len(text):
            raise self.error("unterminated quoted phrase", start)
        self.pos += 1
        if not self.at_end():
            raise self.error(f"unexpected {text[self.pos]!r} after a quoted phrase")
        return "".join(chars)

    def comparison(self, path: str) -> _TermSpec:
        text, start = self.text, self.pos
        op = text[start : start + 2] if text[start + 1 : start + 2] == "=" else text[start]
        self.pos = value_start = start + len(op)
        while not self.at_end():
            self.pos += 1
        if (number := _parse_number(text[value_start : self.pos])) is None:
            raise self.error(f"expected a number after '{op}'", value_start)
        return path, _compare_test(op, number)

    def range(self, path: str) -> _TermSpec:
        text, start = self.text, self.pos
        close = min((i for i in (text.find("]", start), text.find("}", start)) if i >= 0), default=-1)
        if close < 0:
            raise self.error("unterminated range (expected ']' or '}')", start)
        parts = text[start + 1 : close].split()
        if len(parts) != 3 or parts[1] != "TO":
            raise self.error("bad range: expected '[low TO high]'", start)
        self.pos = close + 1
        if not self.at_end():
            raise self.error(f"unexpected {text[self.pos]!r} after a range")
        low, high = parts[0], parts[2]
        low_num, high_num = _parse_number(low), _parse_number(high)
        inclusive = (text[start] == "[", text[close] == "]")
        if (low_num is not None or low == "*") and (high_num is not None or high == "*"):
            if low_num is not None and high_num is not None and low_num > high_num:
                raise self.error(f"empty range: {low} is greater than {high}", start)
            return path, _range_test(low_num, high_num, inclusive, numeric=True)
        bounds = (None if low == "*" else low, None if high == "*" else high)
        return path, _range_test(*bounds, inclusive, numeric=False)

    def unquoted(self, path: str) -> _TermSpec:
        """A bare value: escapes resolved, ``*``/``?`` wildcards unless escaped."""
        text, start = self.text, self.pos
        literal: list[str] = []  # the value with escapes resolved
        pieces: list[str] = []  # regex pieces, built in case a wildcard appears
        wildcard = False
        while self.pos < len(text) and not text[self.pos].isspace() and text[self.pos] != ")":
            char = text[self.pos]
            if char == "\\":
                self.pos += 1
                if self.pos >= len(text):
                    raise self.error("a backslash at the end escapes nothing", self.pos - 1)
                char = text[self.pos]
                literal.append(char)
                pieces.append(re.escape(char))
            elif char in "*?":
                wildcard = True
                literal.append(char)
                pieces.append(".*" if char == "*" else ".")
            elif char in ':("':
                raise self.error(f"unescaped {char!r} in a value (escape it as '\\{char}')")
            else:
                literal.append(char)
                pieces.append(re.escape(char))
            self.pos += 1
        if text[start : self.pos] == "*":
            return path, None
        if wildcard:
            return path, _pattern_test(re.compile("".join(pieces), re.DOTALL))
        return path, _exact_test("".join(literal))


# -- value tests --------------------------------------------------------------------------------------
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _parse_number(text: str) -> int | float | None:
    """The number ``text`` spells, else None; integers stay exact (ids beyond 2**53)."""
    if _INTEGER.fullmatch(text) and len(text) < 100:  # int() refuses very long digit strings
        return int(text)
    return float(text) if _NUMBER.fullmatch(text) else None


def _match_all(event: Any) -> bool:
    return True


def _exact_test(value: str) -> Test:
    """Strings compare as written; numbers numerically when ``value`` is a number; booleans as true/false."""
    number = _parse_number(value)
    boolean = {"true": True, "false": False}.get(value)

    def exact(x: Any) -> bool:
        kind = type(x)  # type(), not isinstance: a bool is an int but must not equal 1
        if kind is str:
            return bool(x == value)
        if kind is int or kind is float:
            return number is not None and bool(x == number)
        return kind is bool and x is boolean

    return exact


def _pattern_test(regex: re.Pattern[str]) -> Test:
    fullmatch = regex.fullmatch
    return lambda x: type(x) is str and fullmatch(x) is not None


def _compare_test(op: str, number: int | float) -> Test:
    compare = _COMPARE[op]
    return lambda x: (type(x) is int or type(x) is float) and compare(x, number)


def _range_test(low: Any, high: Any, inclusive: tuple[bool, bool], numeric: bool) -> Test:
    """Numeric ranges accept JSON numbers only, string ranges strings only; None is an open end."""
    low_ok = _match_all if low is None else partial(operator.le if inclusive[0] else operator.lt, low)
    high_ok = _match_all if high is None else partial(operator.ge if inclusive[1] else operator.gt, high)

    def in_range(x: Any) -> bool:
        kind = type(x)
        if (kind is int or kind is float) if numeric else kind is str:
            return bool(low_ok(x) and high_ok(x))
        return False

    return in_range


def _term(values: Callable[[Any], list[Any]], test: Test | None) -> Predicate:
    """A term matches when ANY value of the attribute passes (lists count each element)."""
    if test is None:
        return lambda event: bool(values(event))

    return lambda event: any(map(test, values(event)))  # map keeps the loop in C


#: Values a term tests as they are: one value, itself (null has none; lists and objects are walked).
_SCALARS = frozenset({str, int, float, bool})


def _term_many(path: str, test: Test | None, one: Predicate) -> ManyPredicate:
    """``_term`` for a list of events: a plain value is tested at once, anything else as ``one`` does."""
    raw_values = compile_many(path)
    scalars = _SCALARS
    if test is None:
        return lambda events: [
            raw.__class__ in scalars or (raw is not None and one(event))
            for event, raw in zip(events, raw_values(events), strict=True)
        ]
    return lambda events: [
        test(raw) if raw.__class__ in scalars else (raw is not None and one(event))
        for event, raw in zip(events, raw_values(events), strict=True)
    ]


def _all_many(events: Sequence[Any]) -> list[bool]:
    return [True] * len(events)


# -- parser -------------------------------------------------------------------------------------------
_STARTS = frozenset({"TERM", "STAR", "(", "NOT", "NEG"})  # tokens that begin a unary


class _Parser:
    """Recursive descent over the tokens, building closures as it goes.

    or := and (OR and)* ; and := unary ([AND] unary)* ; unary := (NOT | -) unary | primary
    """

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.paths: dict[str, None] = {}  # an ordered set

    def kind(self) -> str:
        return str(self.tokens[self.index][0])

    def advance(self) -> _Token:
        self.index += 1
        return self.tokens[self.index - 1]

    def unexpected(self, after: _Token | None = None) -> FilterSyntaxError:
        kind, column, _ = self.tokens[self.index]
        if kind == "END" and after:
            what = "-" if after[0] == "NEG" else after[0]
            return FilterSyntaxError(f"unexpected end of filter after {what!r}", column)
        return FilterSyntaxError(f"unexpected {kind!r}", column)

    def parse(self) -> _Compiled:
        compiled = (_match_all, _all_many) if self.kind() == "END" else self.or_expr()
        if self.kind() != "END":
            raise self.unexpected()
        return compiled

    def or_expr(self) -> _Compiled:
        parts = [self.and_expr()]
        while self.kind() == "OR":
            parts.append(self.and_expr(self.advance()))
        return _join(parts, conjunction=False) if len(parts) > 1 else parts[0]

    def and_expr(self, after: _Token | None = None) -> _Compiled:
        parts = [self.unary(after)]
        while self.kind() in _STARTS or self.kind() == "AND":
            parts.append(self.unary(self.advance() if self.kind() == "AND" else None))
        return _join(parts, conjunction=True) if len(parts) > 1 else parts[0]

    def unary(self, after: _Token | None = None) -> _Compiled:
        kind, column, payload = self.tokens[self.index]
        if kind == "TERM":
            self.advance()
            path, test = payload
            self.paths.setdefault(path)
            one = _term(compile_values(path), test)
            return one, _term_many(path, test, one)
        if kind == "STAR":
            self.advance()
            return _match_all, _all_many
        if kind not in ("NOT", "NEG", "("):
            raise self.unexpected(after)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterSyntaxError(f"filter nested deeper than {MAX_DEPTH} levels", column)
        token = self.advance()
        if kind != "(":
            inner, inner_many = self.unary(token)
            self.depth -= 1
            return lambda event: not inner(event), lambda events: [not m for m in inner_many(events)]
        if self.kind() == ")":
            raise FilterSyntaxError("empty parentheses", self.tokens[self.index][1])
        group = self.or_expr() if self.kind() != "END" else None
        if group is None or self.kind() == "END":  # an or_expr stops only at ')' or the end
            raise FilterSyntaxError("unclosed '('", column)
        self.advance()
        self.depth -= 1
        return group


def _join(parts: list[_Compiled], conjunction: bool) -> _Compiled:
    """The parts joined by AND (``conjunction``) or OR, for one event and for a list of them."""
    ones = [one for one, _ in parts]
    if len(ones) == 2:  # the common case, without a generator
        first, second = ones
        if conjunction:
            one: Predicate = lambda event: first(event) and second(event)  # noqa: E731
        else:
            one = lambda event: first(event) or second(event)  # noqa: E731
    else:
        join = all if conjunction else any
        one = lambda event: join(predicate(event) for predicate in ones)  # noqa: E731
    return one, _joined([many for _, many in parts], conjunction)


def _joined(manys: list[ManyPredicate], undecided: bool) -> ManyPredicate:
    """The parts for a list of events, joined by AND (``undecided`` True) or OR (False).

    As with one event, a part reads only the events that the parts before it
    left undecided: still true for AND, still false for OR.
    """

    def many(events: Sequence[dict[str, Any]]) -> list[bool]:
        results = manys[0](events)
        for part in manys[1:]:
            open_ = [i for i, result in enumerate(results) if result is undecided]
            if not open_:
                break
            for i, result in zip(open_, part([events[i] for i in open_]), strict=True):
                results[i] = result
        return results

    return many


def parse_filter(text: str) -> Filter:
    """Parse ``text`` once into a :class:`Filter`; raise :class:`FilterSyntaxError` with a column."""
    if not isinstance(text, str):
        raise FilterSyntaxError(f"a filter must be a string, got {type(text).__name__}", 1)
    parser = _Parser(_Lexer(text).tokens())
    predicate, many = parser.parse()
    return Filter(text, predicate, tuple(parser.paths), many)
