"""Marked blocks in Markdown: finding, replacing, and the benchmark tables' round trip."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import docs_sync, suite
from pipeline.docblocks import find_blocks, names_marked, replace_block, wrap

PAGE = """# Title

<!-- bench:a -->
| x |
<!-- /bench:a -->

text <!-- settings:table -->
| y |
<!-- /settings:table -->
"""


def test_find_blocks_by_kind() -> None:
    assert find_blocks(PAGE, "bench") == {"a": "| x |\n"}
    assert find_blocks(PAGE, "settings") == {"table": "| y |\n"}
    assert find_blocks(PAGE, "other") == {}


def test_replace_block_changes_only_that_block() -> None:
    out = replace_block(PAGE, "bench", "a", "| z |")
    assert find_blocks(out, "bench") == {"a": "| z |\n"}
    assert find_blocks(out, "settings") == {"table": "| y |\n"}
    assert out.replace("| z |", "| x |") == PAGE


def test_replace_missing_block_raises() -> None:
    with pytest.raises(KeyError):
        replace_block(PAGE, "bench", "b", "| z |")


def test_unclosed_block_is_noticed() -> None:
    page = "<!-- bench:a -->\n| x |\n"
    assert find_blocks(page, "bench") == {}
    assert names_marked(page, "bench") == ["a"]
    assert docs_sync.disagreements(page, wrap("bench", "a", "| x |")) == ["bench:a has no end marker"]


def test_disagreements_and_sync() -> None:
    results = wrap("bench", "a", "| new |") + "\n" + wrap("bench", "b", "| b |")
    page = PAGE
    assert docs_sync.disagreements(page, results) == ["bench:a differs from bench/results.md"]
    synced = docs_sync.sync(page, results)
    assert docs_sync.disagreements(synced, results) == []
    assert find_blocks(synced, "settings") == {"table": "| y |\n"}
    unknown = wrap("bench", "gone", "| g |")
    assert docs_sync.disagreements(unknown, results) == ["bench:gone is not a table of bench/results.md"]
    twice = wrap("bench", "b", "| b |") + "\n" + wrap("bench", "b", "| b |")
    assert docs_sync.disagreements(twice, results) == ["bench:b is included twice"]


def test_suite_writes_one_marked_table_per_step(tmp_path: Path) -> None:
    tables = {
        "enrich": [("hot path", "10.0 µs/event (9.0-11.0)", "bench/enrich.py")],
        "scale": [("**two workers / one**", "**1.50 (1.40-1.60)**", "ratio, same run")],
    }
    host = dict.fromkeys(("cores", "cpu", "ram", "os", "python", "kafka", "date", "commit", "load"), "x")
    out = tmp_path / "results.md"
    suite.write_results(out, tables, host, argparse.Namespace(runs=3, quick=False), 1.0)
    blocks = find_blocks(out.read_text(), "bench")
    assert set(blocks) == {"enrich", "scale"}
    assert blocks["scale"].splitlines() == [
        "| figure (median of 3, min-max) | value | how |",
        "|---|---|---|",
        "| **two workers / one** | **1.50 (1.40-1.60)** | ratio, same run |",
    ]


def test_suite_rows_cover_every_step_even_when_none_ran() -> None:
    by_name = {step.name: step for step in suite.steps()}
    for step in by_name.values():
        step.error = "not run (--only)"
    tables = suite.rows(by_name, 3)
    assert set(tables) == set(by_name)
    assert all(rows and all(value == "not run (--only)" for _, value, _ in rows) for rows in tables.values())
