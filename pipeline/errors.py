"""The one exception root of the project and its few precise subclasses."""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """Settings or a config file are invalid; the message names every bad key."""


class MissingDependencyError(PipelineError):
    """An optional dependency is not installed; the message says how to install it."""

    def __init__(self, package: str, feature: str, extra: str | None = None) -> None:
        hint = f"pip install 'rum-pipeline[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package {package!r}, which is not installed: {hint}")
        self.package = package


class KafkaUnavailableError(PipelineError):
    """The Kafka cluster named by the settings cannot be reached."""
