"""Answers rendered for the command line: JSON, CSV and a rich table with its summary."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
from rich.console import Console

from pipeline.view.render import as_csv, as_json, print_table, summary


def answer(**changes: Any) -> dict[str, Any]:
    """A query answer of two groups, in the shape the view returns."""
    base: dict[str, Any] = {
        "rollup": "cart_value_by_country",
        "from": "2026-12-01T00:00:00Z",
        "to": "2026-12-02T00:00:00Z",
        "group_by": ["geo.country"],
        "aggregations": ["count", "avg"],
        "groups": [
            {"group": {"geo.country": "France"}, "values": {"count": 1234567, "avg": 20.123456789}},
            {"group": {"geo.country": None}, "values": {"count": 3, "avg": None}},
        ],
        "groups_total": 2,
        "windows": {"1d": 1},
        "final": True,
        "open_windows": 0,
        "late": 0,
        "approximations": [],
    }
    return {**base, **changes}


def series_answer() -> dict[str, Any]:
    points = [
        {
            "from": "2026-12-01T00:00:00Z",
            "groups": [{"group": {"geo.country": "France"}, "values": {"sum": 1.5}}],
        },
        {
            "from": "2026-12-01T01:00:00Z",
            "groups": [{"group": {"geo.country": "Spain"}, "values": {"sum": 2}}],
        },
    ]
    return answer(aggregations=["sum"], series=points, groups=[])


def rendered(value: dict[str, Any], title: str = "title") -> str:
    out = io.StringIO()
    print_table(value, Console(file=out, width=200, color_system=None), title)
    return out.getvalue()


def test_json_is_the_answer_itself() -> None:
    value = answer()
    assert orjson.loads(as_json(value)) == value
    assert as_json(value).startswith('{\n  "rollup"')  # indented, as the HTTP API shows it


def test_csv_has_a_header_and_full_precision_and_empty_cells_for_none() -> None:
    rows = list(csv.reader(io.StringIO(as_csv(answer()))))
    assert rows == [
        ["geo.country", "count", "avg"],
        ["France", "1234567", "20.123456789"],
        ["", "3", ""],
    ]


def test_csv_of_a_series_has_one_row_per_point_and_group() -> None:
    rows = list(csv.reader(io.StringIO(as_csv(series_answer()))))
    assert rows == [
        ["from", "geo.country", "sum"],
        ["2026-12-01T00:00:00Z", "France", "1.5"],
        ["2026-12-01T01:00:00Z", "Spain", "2"],
    ]


def test_csv_quotes_values_holding_commas() -> None:
    value = answer(
        groups=[{"group": {"geo.country": "Korea, Republic of"}, "values": {"count": 1, "avg": 2.0}}]
    )
    assert list(csv.reader(io.StringIO(as_csv(value))))[1] == ["Korea, Republic of", "1", "2.0"]


def test_summary_of_a_final_answer() -> None:
    assert summary(answer(windows={"1d": 1, "1h": 23})) == [
        "2026-12-01T00:00:00Z .. 2026-12-02T00:00:00Z: 1×1d + 23×1h windows, final"
    ]


def test_summary_names_open_windows_late_actions_and_approximations() -> None:
    lines = summary(
        answer(windows={}, final=False, open_windows=4, late=7, approximations=["p95 within 1 %"])
    )
    assert lines == [
        "2026-12-01T00:00:00Z .. 2026-12-02T00:00:00Z: none windows, 4 window(s) not final yet",
        "7 late action(s) in this range are not counted (see <rollup>:late)",
        "note: p95 within 1 %",
    ]


def test_table_formats_numbers_and_missing_values() -> None:
    output = rendered(answer(), title="cart values")
    assert "cart values" in output
    rows = [line.strip("│ ").split() for line in output.splitlines() if line.startswith("│")]
    assert rows == [["France", "│", "1,234,567", "│", "20.12"], ["-", "│", "3", "│", "-"]]
    assert output.splitlines()[-1].endswith("1×1d windows, final")


def test_table_says_when_groups_are_cut() -> None:
    assert "2 of 9 groups shown" in rendered(answer(groups_total=9))
    assert "groups shown" not in rendered(answer())


def test_facet_answer_is_a_value_count_table() -> None:
    facet = answer(
        facet="geo.country",
        values=[{"value": "France", "count": 7000}, {"value": None, "count": 3}],
        unique_values=2,
        total=7003,
    )
    output = rendered(facet)
    assert "France" in output and "7,000" in output
    assert "2 distinct values, 7,003 in all" in output
