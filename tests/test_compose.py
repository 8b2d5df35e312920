"""The compose file runs the project's real commands with valid settings.

No Docker engine runs where the tests run, so the file is checked statically.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml

from pipeline.cli import main
from pipeline.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _resolves(command: list[str]) -> bool:
    """True when `command` names a real rum-pipeline (sub)command."""
    assert command[0] == "rum-pipeline"
    group: click.Command = main
    for word in command[1:]:
        if word.startswith("-"):
            break
        assert isinstance(group, click.Group), f"{word!r} follows a command that has no subcommands"
        sub = group.commands.get(word)
        if sub is None:
            return False
        group = sub
    return not isinstance(group, click.Group)


def _environment(service: dict) -> dict[str, str]:
    """A service's environment as Compose passes it, with ${VAR:-default} taken as its default."""
    env = {}
    for key, value in service["environment"].items():
        match = re.fullmatch(r"\$\{\w+:-(.*)\}", str(value))
        env[key] = match.group(1) if match else str(value)
    return env


def test_services_present(compose: dict) -> None:
    assert set(compose["services"]) >= {"kafka", "topics-init", "worker", "intake"}
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "healthcheck" in kafka


@pytest.mark.parametrize("service", ["topics-init", "worker", "intake"])
def test_project_services_run_real_commands_with_valid_settings(compose: dict, service: str) -> None:
    spec = compose["services"][service]
    assert _resolves(spec["command"]), spec["command"]
    settings = load_settings(_environment(spec))  # raises on any unknown or invalid RUM_* key
    host, _, port = settings.kafka.bootstrap.partition(":")
    kafka_env = compose["services"]["kafka"]["environment"]
    assert f"//{host}:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]


def test_worker_is_scalable(compose: dict) -> None:
    worker = compose["services"]["worker"]
    # A fixed container name or a host port would make `--scale worker=3` fail.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
    settings = load_settings(_environment(worker))
    assert str(settings.worker.metrics_port) in worker["expose"]
    assert f"127.0.0.1:{settings.worker.metrics_port}/healthz" in " ".join(worker["healthcheck"]["test"])


def test_intake_listens_on_every_interface_at_its_published_port(compose: dict) -> None:
    intake = compose["services"]["intake"]
    settings = load_settings(_environment(intake))
    assert settings.intake.host == "0.0.0.0"
    assert f"{settings.intake.port}:{settings.intake.port}" in intake["ports"]
    assert f"127.0.0.1:{settings.intake.port}/healthz" in " ".join(intake["healthcheck"]["test"])
    assert intake["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"


def test_dockerfile_installs_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile
    assert 'CMD ["rum-pipeline", "worker"]' in dockerfile
    for path in ("pipeline", "schemas", "pyproject.toml"):
        assert f"COPY {path}" in dockerfile or f" {path} " in dockerfile
