"""The compose file runs `rum-pipeline serve` with valid options and a health check on its port."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_serve_service_runs_the_real_command() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    serve = compose["services"]["serve"]
    command = serve["command"]
    assert command[:2] == ["rum-pipeline", "serve"]
    # The options parse (--help stops before anything connects).
    result = CliRunner().invoke(main, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert f"{port}:{port}" in serve["ports"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(serve["healthcheck"]["test"])
    load_settings({k: str(v) for k, v in serve["environment"].items()})  # raises on a bad RUM_* key
    assert serve["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
    # The image carries the rollup config serve (and the workers) read.
    assert "COPY config ./config" in (ROOT / "Dockerfile").read_text()
