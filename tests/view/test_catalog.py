"""The catalog: what can be queried, from the rollup config the workers run with."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.rollups.config import RollupConfigError, default_config_path, load_rollup_config
from pipeline.settings import load_settings
from pipeline.view.catalog import load_catalog

CONFIG = """
facets: [action.target.name, geo.country]
measures: [{path: context.value, unit: EUR}]
rollups:
  - name: cart_value
    measure: context.value
    group_by: [geo.country]
    aggregations: [count, avg, p95]
    intervals: [1m, 1h]
"""


def test_the_default_config_when_none_is_set() -> None:
    catalog = load_catalog(load_settings({}))
    config = load_rollup_config(default_config_path())
    assert list(catalog.rollups) == [r.name for r in config.rollups]
    assert catalog.facets == tuple(f.path for f in config.facets)


def test_the_configured_file(tmp_path: Path) -> None:
    path = tmp_path / "rollups.yaml"
    path.write_text(CONFIG)
    catalog = load_catalog(load_settings({"RUM_ROLLUPS_CONFIG": str(path)}))
    assert catalog.facets == ("action.target.name", "geo.country")
    assert list(catalog.rollups) == ["cart_value"]
    info = catalog.rollups["cart_value"]
    assert info.group_by == ("geo.country",)
    assert info.aggregations == ("count", "avg", "p95")
    assert info.intervals_s == (60, 3600)


def test_a_bad_config_is_a_rollup_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rollups.yaml"
    path.write_text(CONFIG.replace("p95", "p101"))
    with pytest.raises(RollupConfigError, match="p101"):
        load_catalog(load_settings({"RUM_ROLLUPS_CONFIG": str(path)}))
