"""The exception root: precise subclasses, install hints, and no new error outside the root."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import pipeline
from pipeline.errors import ConfigError, KafkaUnavailableError, MissingDependencyError, PipelineError

#: Exceptions of the package deliberately not under PipelineError, each with its reason.
OUTSIDE_THE_ROOT = {
    # Control flow inside one module or between a module and its caller, never shown to a user.
    "pipeline.outputs.Fenced",
    "pipeline.intake.body.BodyError",
    "pipeline.intake.server._Refused",
    "pipeline.intake.server._ClientGone",
    "pipeline.intake.events._Rejected",
    # ValueErrors of parsers (attribute paths, times): callers turn them into their own error.
    "pipeline.query.paths.PathError",
    "pipeline.view.ranges.RangeError",
}


def test_subclasses_are_pipeline_errors() -> None:
    for error in (ConfigError, MissingDependencyError, KafkaUnavailableError):
        assert issubclass(error, PipelineError)
    assert issubclass(PipelineError, Exception) and not issubclass(PipelineError, ValueError)


def test_missing_dependency_names_the_package_the_feature_and_the_install_command() -> None:
    error = MissingDependencyError("geoip2", "the geo enrichment")
    assert error.package == "geoip2"
    assert str(error) == (
        "the geo enrichment needs the package 'geoip2', which is not installed: pip install geoip2"
    )


def test_missing_dependency_of_an_extra_points_to_the_extra() -> None:
    error = MissingDependencyError("rocksdict", "spilling state to disk", extra="rocksdb")
    assert str(error).endswith("pip install 'rum-pipeline[rocksdb]'")
    with pytest.raises(PipelineError, match="rocksdict"):
        raise error


def _package_exceptions() -> set[str]:
    found = set()
    for module_info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found.add(f"{module.__name__}.{name}")
    return found


def test_every_other_exception_of_the_package_is_under_the_root() -> None:
    outside = set()
    for qualified in _package_exceptions():
        module, _, name = qualified.rpartition(".")
        if not issubclass(getattr(importlib.import_module(module), name), PipelineError):
            outside.add(qualified)
    assert outside == OUTSIDE_THE_ROOT
