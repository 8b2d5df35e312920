"""Packed entries: every field comes back as it went in, and compacted sketches expand exactly."""

from __future__ import annotations

import random
import sys
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.view.columns import WindowColumns
from pipeline.view.entry import COMPACT, PLAIN, Entry, compact, expand
from pipeline.view.store import decode_record
from tests.view.records import rollup_record

DAY0 = 1_764_288_000_000

NUMBERS: list[Any] = [None, 0, 0.0, -0.0, 7, 2.5, -3.25, 1e300, 5e-324, 2**53 + 1, -(2**63), 2**63 - 1]
WIDE: list[Any] = [2**63, -(2**63) - 1, 10**30]


@pytest.mark.parametrize("seed", range(5))
def test_fields_come_back_with_their_types(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        fields = (
            rng.choice([0, 1, 250, 2**40]),
            rng.choice(NUMBERS + WIDE),
            rng.choice([0, 3, 2**40]),
            rng.choice(NUMBERS + WIDE),
            rng.choice(NUMBERS + WIDE),
            rng.random() < 0.5,
            rng.choice([None, 0, 12345678901, b'{"hll":{"usr.id":"AgEHDA=="}}', b"{}"]),
        )
        entry = Entry(*fields)
        got = entry.fields()
        assert got == fields
        # Same value and same type: an int min stays an int (answers give it back as the record had it).
        assert [type(v) for v in got] == [type(v) for v in fields]
        assert entry.has_sketches == (fields[6] is not None)
        assert entry.spilled == isinstance(fields[6], int)
        assert Entry(*fields) == entry  # equal fields, equal entries


def test_an_entry_is_one_object() -> None:
    record = rollup_record("cart", 60, DAY0, {"geo.country": "France"}, [(12.5, "u1"), (80.25, "u2")])
    raw = orjson.dumps(record)
    _, entry = decode_record(raw)
    assert not hasattr(entry, "__dict__")
    assert sys.getsizeof(entry) < len(orjson.dumps(record["sketches"]))  # compacted, and nothing else


def sketch_texts(seed: int) -> list[bytes]:
    """Sketches objects as workers write them, over values near and far apart."""
    rng = random.Random(seed)
    out = []
    for _ in range(200):
        kind = rng.choice(("near", "spread", "negative", "zeros", "none"))
        n = rng.randint(0, 15)
        if kind == "spread":
            nums: list[Any] = [rng.lognormvariate(3, 3) for _ in range(n)]
        elif kind == "negative":
            nums = [rng.uniform(-100, 100) for _ in range(n)]
        elif kind == "zeros":
            nums = [0.0 if rng.random() < 0.5 else rng.uniform(1, 3) for _ in range(n)]
        elif kind == "none":
            nums = [None] * n
        else:
            nums = [round(rng.uniform(10, 20), 2) for _ in range(n)]
        rows = [(x, f"u{rng.randrange(30)}") for x in nums]
        record = rollup_record("cart", 60, DAY0, {"geo.country": "Peru"}, rows)
        out.append(orjson.dumps(record["sketches"]))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_compacted_sketches_expand_to_the_same_text(seed: int) -> None:
    for text in sketch_texts(seed):
        kind, payload = compact(text)
        assert kind == COMPACT
        assert expand(payload) == text
        assert len(payload) <= len(text)


def test_zero_runs_of_every_length_and_fragments_inside_strings() -> None:
    for zeros in range(0, 300):
        text = b'{"positive":{"offset":3,"counts":[1' + b",0" * zeros + b',2],"collapsed":false}}'
        assert expand(compact(text)[1]) == text
    tricky = b'{"hll":{",0,0,0,0,0,0,0,0,\\"count\\":":"AgE=",",\\"sum\\":":"AgE="}}'
    assert expand(compact(tricky)[1]) == tricky


def test_a_text_with_a_marker_byte_is_kept_as_it_came() -> None:
    text = '{"hll":{"co₂,0,0,0,0":"x"}}'.encode()  # U+2082 is E2 82 82 in UTF-8
    assert compact(text) == (PLAIN, text)
    entry = Entry(1, None, 0, None, None, True, text)
    assert entry.sketches == text
    other = '{"hll":{"usr.prénom,0,0,0,0":"AgE="}}'.encode()  # non-ASCII without a marker byte
    kind, payload = compact(other)
    assert kind == COMPACT and len(payload) < len(other) and expand(payload) == other


def test_window_columns_from_packed_heads_equal_the_fields() -> None:
    rng = random.Random(4)
    entries = {}
    for g in range(200):
        fields = [rng.randint(0, 9), rng.choice(NUMBERS), rng.randint(0, 9)]
        fields += [rng.choice(NUMBERS), rng.choice(NUMBERS), rng.random() < 0.9, None]
        entries[(f"g{g}",)] = Entry(*fields)
    plain = WindowColumns(entries, np.arange(200, dtype=np.int32))
    # One entry of the wide layout takes the window through the field-by-field path.
    wide = dict(entries)
    wide[("wide",)] = Entry(1, None, 1, 10**30, None, True, None)
    slow = WindowColumns(wide, np.arange(201, dtype=np.int32))
    for name in ("actions", "values", "sums", "low", "high", "low_int", "high_int"):
        fast, reference = getattr(plain, name), getattr(slow, name)[:200]
        assert fast.dtype == reference.dtype and np.array_equal(fast, reference), name
    assert plain.final == all(e.final for e in entries.values())
    expected_low = [np.inf if e.min is None else float(e.min) for e in entries.values()]
    assert plain.low.tolist() == expected_low
    # -0.0 adds nothing, as in the merge entry by entry (which leaves falsy sums out).
    assert not (np.signbit(plain.sums) & (plain.sums == 0)).any()
