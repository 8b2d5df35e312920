"""Rollups: measures aggregated per group and tumbling window, declared in one config file."""

from pipeline.rollups.config import (
    AggregationSpec,
    FacetSpec,
    MeasureSpec,
    RollupConfig,
    RollupConfigError,
    RollupSpec,
    default_config_path,
    load_rollup_config,
    parse_rollup_config,
)

__all__ = [
    "AggregationSpec",
    "FacetSpec",
    "MeasureSpec",
    "RollupConfig",
    "RollupConfigError",
    "RollupSpec",
    "default_config_path",
    "load_rollup_config",
    "parse_rollup_config",
]
