"""`rum-pipeline query` and `facets` refuse bad arguments with exit status 2 before reading Kafka."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipeline.cli import main


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["query", "nope"], "ROLLUP"),
        (["query", "cart_value_by_country", "--agg", "avg,p42"], "--agg"),
        (["query", "cart_value_by_country", "--from", "2026-01-02", "--to", "2026-01-01"], "--from"),
        (["query", "cart_value_by_country", "--from", "2000-01-01", "--to", "2000-01-02"], "--to"),
        (["query", "cart_value_by_country", "--where", "browser.name:Chrome"], "--where"),
        (["query", "cart_value_by_country", "--last", "7d", "--every", "1m"], "--every"),
        (["query", "cart_value_by_country", "--top", "many"], "--top"),
        (["facets", "nope"], "PATH"),
        (["facets", "geo.country", "--last", "soon"], "--last"),
        (["serve", "--retention", "8x"], "--retention"),
    ],
)
def test_bad_arguments_exit_2_naming_them(args: list[str], named: str) -> None:
    env = {"RUM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}  # nothing listens: an attempt to connect would show
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {named}" in result.output or f"Invalid value for '{named}'" in result.output
