"""Answers as a rich table, CSV or JSON, for the command line."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


def as_json(answer: dict[str, Any]) -> str:
    """The answer as indented JSON (what the HTTP API returns)."""
    return orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()


def _rows(answer: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: one per group, or one per point and group for a series."""
    names = list(answer.get("group_by", []))
    aggs = list(answer["aggregations"])
    if "series" in answer:
        header = ["from", *names, *aggs]
        rows = [
            [point["from"], *(g["group"].get(n) for n in names), *(g["values"][a] for a in aggs)]
            for point in answer["series"]
            for g in point["groups"]
        ]
    else:
        header = [*names, *aggs]
        rows = [
            [*(g["group"].get(n) for n in names), *(g["values"][a] for a in aggs)] for g in answer["groups"]
        ]
    return header, rows


def as_csv(answer: dict[str, Any]) -> str:
    """Groups (or series points) as CSV with a header line; numbers at full precision."""
    header, rows = _rows(answer)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def summary(answer: dict[str, Any]) -> list[str]:
    """Lines saying which windows were used, finality, late actions and approximations."""
    windows = " + ".join(f"{n}×{name}" for name, n in answer["windows"].items()) or "none"
    state = "final" if answer["final"] else f"{answer['open_windows']} window(s) not final yet"
    lines = [f"{answer['from']} .. {answer['to']}: {windows} windows, {state}"]
    if answer["late"]:
        lines.append(f"{answer['late']} late action(s) in this range are not counted (see <rollup>:late)")
    lines += [f"note: {note}" for note in answer["approximations"]]
    return lines


def print_table(answer: dict[str, Any], console: Console, title: str) -> None:
    """A rich table of the answer, then its summary lines."""
    if "values" in answer and "facet" in answer:  # a facet answer
        table = Table(title=title)
        table.add_column(answer["facet"])
        table.add_column("count", justify="right")
        for row in answer["values"]:
            table.add_row(_cell(row["value"]), _cell(row["count"]))
        console.print(table)
        console.print(f"{answer['unique_values']} distinct values, {answer['total']:,} in all")
    else:
        header, rows = _rows(answer)
        table = Table(title=title)
        for i, name in enumerate(header):
            table.add_column(
                name, justify="left" if i < len(header) - len(answer["aggregations"]) else "right"
            )
        for row in rows:
            table.add_row(*(_cell(v) for v in row))
        console.print(table)
        if answer.get("groups_total", 0) > len(answer["groups"]):
            console.print(f"{len(answer['groups'])} of {answer['groups_total']} groups shown")
    for line in summary(answer):
        console.print(line, style="dim", highlight=False)
