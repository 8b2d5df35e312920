"""What can be queried: the rollups and facets of the rollup config the workers run with."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.rollups.config import default_config_path, load_rollup_config
from pipeline.settings import Settings
from pipeline.view.request import RollupInfo, catalog_of


@dataclass(frozen=True)
class Catalog:
    """Queryable rollups by name, and facet paths."""

    rollups: dict[str, RollupInfo]
    facets: tuple[str, ...]


def load_catalog(settings: Settings) -> Catalog:
    """The catalog of RUM_ROLLUPS_CONFIG (default config/rollups.yaml); raises RollupConfigError."""
    config = load_rollup_config(settings.rollups.config or default_config_path())
    return Catalog(catalog_of(config), tuple(f.path for f in config.facets))
