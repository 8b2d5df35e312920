"""One kept measure-rollup record as a single ``bytes`` object: summaries packed, sketches compacted.

A key of the view used to be a named tuple of seven fields, three Python
floats and the sketches' JSON bytes: 828 bytes for a record with a DDSketch
and an HLL, of which the JSON was 604 (measured with ``tracemalloc``, see
docs/query.md). Here the same values are one ``bytes`` subclass without a
``__dict__`` (no other object per key):

- a 2-byte head: flags (final, which of sum / min / max are None or ints, a
  wide layout) and the kind of sketches (none, in memory, in the spill);
- the summaries as ``<qqddd`` (actions, numeric count, sum, min, max; a min,
  max or sum that is an int is stored as an int64), or, for numbers that do not
  fit (an int past int64), their JSON after a 2-byte length;
- the sketches: their JSON with its constant fragments and runs of zero
  counts replaced by single bytes 0x80.. (:func:`compact` / :func:`expand`),
  or a spill handle.

The replacement is exactly reversible: each fragment has its own byte, and a
text that already holds one of those bytes (possible only in a non-ASCII
attribute name) is kept as it came (flagged). Reading a field unpacks it; :mod:`pipeline.view.columns` reads
the summaries of a whole window at once from the packed heads.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import orjson

#: Flags of the first byte.
FINAL, SUM_NONE, MIN_NONE, MAX_NONE, SUM_INT, MIN_INT, MAX_INT, WIDE = (1 << i for i in range(8))
#: Kinds of sketches (the second byte): none, compacted JSON, JSON as it came, a spill handle.
NO_SKETCHES, COMPACT, PLAIN, SPILLED = range(4)
#: The summaries of the usual layout, after the 2-byte head.
_NUMBERS = struct.Struct("<qqddd")
HEAD = 2 + _NUMBERS.size
#: The layout for each combination of int flags: an int sum, min or max is kept as an int64.
_LAYOUTS = {
    bits: struct.Struct("<qq" + "".join("q" if bits & flag else "d" for flag in (SUM_INT, MIN_INT, MAX_INT)))
    for bits in range(0, 128, 16)
}
_Q = struct.Struct("<q")
_D = struct.Struct("<d")
_WIDE_LEN = struct.Struct("<H")

#: The start of a DDSketch's JSON (the default mapping) and of an HLL-only one: cut off once.
_PREFIXES = (
    b'{"ddsketch":{"type":"ddsketch","mapping":"logarithmic","relative_accuracy":0.01,'
    b'"gamma":1.02020202020202,"index_offset":0.0,"bin_limit":2048,"positive":{"offset":',
    b'{"hll":{"',
)
#: Fragments replaced wherever they are, in this order: runs of zero counts (4 of them, then 4
#: of those, then 4 again: 4, 16 and 64 zeros), then the usual keys of the portable form.
_FRAGMENTS = (
    b",0,0,0,0",
    b"\x82\x82\x82\x82",
    b"\x83\x83\x83\x83",
    b",0,0",
    b'],"collapsed":false},"negative":{"offset":0,"counts":[],"collapsed":false},"zero_count":',
    b',"counts":[',
    b',"count":',
    b',"sum":',
    b'},"hll":{"',
)
#: One byte per prefix and fragment, none of them ASCII: a text that is all ASCII (the
#: usual: numbers, base64 and attribute names) cannot hold one, which is checked in one call.
_MARKERS = bytes(range(0x80, 0x80 + len(_PREFIXES) + len(_FRAGMENTS)))
_PAIRS = tuple(zip(_FRAGMENTS, (bytes((m,)) for m in _MARKERS[len(_PREFIXES) :]), strict=True))
_EXPAND = tuple(zip((*_PREFIXES, *_FRAGMENTS), (bytes((m,)) for m in _MARKERS), strict=True))[::-1]


def compact(text: bytes) -> tuple[int, bytes]:
    """``(kind, payload)`` of a sketches JSON text: COMPACT and the shorter text, or PLAIN and ``text``.

    Runs on every record applied (about 3 µs for a DDSketch's 600 bytes): a few C-speed
    replacements, no parsing.
    """
    if not text.isascii() and len(text.translate(None, _MARKERS)) != len(text):
        return PLAIN, text  # holds a marker byte (a non-ASCII attribute name): kept as it came
    if text.startswith(_PREFIXES[1]):
        return COMPACT, b"\x81" + text[len(_PREFIXES[1]) :]  # HLL images only: nothing else repeats
    if text.startswith(_PREFIXES[0]):
        text = b"\x80" + text[len(_PREFIXES[0]) :]
    for fragment, marker in _PAIRS:
        text = text.replace(fragment, marker)
    return COMPACT, text


def expand(payload: bytes) -> bytes:
    """The JSON text :func:`compact` made ``payload`` of: each marker back, in the reverse order."""
    for fragment, marker in _EXPAND:
        payload = payload.replace(marker, fragment)
    return payload


class Entry(bytes):
    """What the view keeps of one measure-rollup record (see the module's docstring).

    Made as the named tuple it replaces was, positionally:
    ``Entry(actions, sum, values, min, max, final, sketches)``.
    """

    __slots__ = ()

    def __new__(
        cls,
        actions: int,
        sum: float | None,
        values: int,
        min: float | None,
        max: float | None,
        final: bool,
        sketches: bytes | int | None,
    ) -> Entry:
        if sketches is None:
            kind, payload = NO_SKETCHES, b""
        elif isinstance(sketches, int):
            kind, payload = SPILLED, _Q.pack(sketches)
        else:
            kind, payload = compact(sketches)
        # Written out: this runs for every record applied.
        flags = FINAL if final else 0
        if sum is None:
            flags |= SUM_NONE
            sum = 0.0
        elif sum.__class__ is int:
            flags |= SUM_INT
        if min is None:
            flags |= MIN_NONE
            min = 0.0
        elif min.__class__ is int:
            flags |= MIN_INT
        if max is None:
            flags |= MAX_NONE
            max = 0.0
        elif max.__class__ is int:
            flags |= MAX_INT
        try:
            head = _LAYOUTS[flags & (SUM_INT | MIN_INT | MAX_INT)].pack(actions, values, sum, min, max)
        except (struct.error, OverflowError):
            flags |= WIDE
            # The standard json module: orjson takes no int past 64 bits.
            text = json.dumps([actions, values, *(
                None if flags & none else value
                for value, none in ((sum, SUM_NONE), (min, MIN_NONE), (max, MAX_NONE))
            )]).encode()  # fmt: skip
            head = _WIDE_LEN.pack(len(text)) + text
        return bytes.__new__(cls, bytes((flags, kind)) + head + payload)

    # -- fields ------------------------------------------------------------------------------

    def _number(self, at: int, none: int, is_int: int) -> Any:
        flags = self[0]
        if flags & none:
            return None
        if flags & WIDE:
            return self._wide()[(at - 2) // 8]
        return _Q.unpack_from(self, at)[0] if flags & is_int else _D.unpack_from(self, at)[0]

    def _wide(self) -> list[Any]:
        (size,) = _WIDE_LEN.unpack_from(self, 2)
        return json.loads(self[4 : 4 + size])

    @property
    def actions(self) -> int:
        """Actions counted (the record's ``count``; named so as not to hide ``bytes.count``)."""
        return self._wide()[0] if self[0] & WIDE else _Q.unpack_from(self, 2)[0]

    @property
    def values(self) -> int:
        """Number of numeric measure values: the denominator of avg (``count`` also counts
        matching actions without a number)."""
        return self._wide()[1] if self[0] & WIDE else _Q.unpack_from(self, 10)[0]

    @property
    def sum(self) -> float | None:
        """Sum of the measure values (None when the rollup keeps neither sum nor avg)."""
        return self._number(18, SUM_NONE, SUM_INT)

    @property
    def min(self) -> float | None:
        return self._number(26, MIN_NONE, MIN_INT)

    @property
    def max(self) -> float | None:
        return self._number(34, MAX_NONE, MAX_INT)

    @property
    def final(self) -> bool:
        return bool(self[0] & FINAL)

    def _payload_at(self) -> int:
        if self[0] & WIDE:
            return 4 + _WIDE_LEN.unpack_from(self, 2)[0]
        return HEAD

    @property
    def sketches(self) -> bytes | int | None:
        """``orjson`` bytes of the record's ``sketches`` object; None when it has none; an int
        when they are kept in the store's RocksDB spill (its handle there)."""
        kind = self[1]
        if kind == NO_SKETCHES:
            return None
        at = self._payload_at()
        if kind == SPILLED:
            return _Q.unpack_from(self, at)[0]
        payload = bytes(self[at:])
        return expand(payload) if kind == COMPACT else payload

    def sketch_payload(self) -> tuple[int, bytes]:
        """``(kind, payload)``: the sketches as kept (COMPACT: to :func:`expand`), or NO_SKETCHES
        / SPILLED and b"" (see :attr:`sketches` for the handle)."""
        kind = self[1]
        if kind in (NO_SKETCHES, SPILLED):
            return kind, b""
        return kind, bytes(self[self._payload_at() :])

    @property
    def has_sketches(self) -> bool:
        """Whether the record had sketches (in memory or spilled)."""
        return self[1] != NO_SKETCHES

    @property
    def spilled(self) -> bool:
        """Whether the sketches are in the store's spill."""
        return self[1] == SPILLED

    def with_sketches(self, sketches: bytes | int | None) -> Entry:
        """The same summaries with other sketches (a spill handle, or bytes again)."""
        return Entry(self.actions, self.sum, self.values, self.min, self.max, self.final, sketches)

    def summary(self) -> tuple[int, float | None, int, float | None, float | None, bool]:
        """The fields but the sketches: actions, sum, values, min, max, final."""
        return (self.actions, self.sum, self.values, self.min, self.max, self.final)

    def fields(self) -> tuple[int, float | None, int, float | None, float | None, bool, Any]:
        """The seven fields, in the order of the constructor."""
        return (self.actions, self.sum, self.values, self.min, self.max, self.final, self.sketches)

    def __repr__(self) -> str:
        return "Entry(actions={}, sum={}, values={}, min={}, max={}, final={}, sketches={!r})".format(
            *self.fields()
        )

    def sketch_data(self) -> dict[str, Any]:
        """The decoded ``sketches`` object ({} when there is none); see ``ViewStore.sketch_data``."""
        sketches = self.sketches
        if isinstance(sketches, int):
            raise ValueError("these sketches are in the store's spill: use ViewStore.sketch_data")
        return orjson.loads(sketches) if sketches else {}
