"""The command line: every option explained, clear errors, fast failure without Kafka."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.kafka_helpers import CLI


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


@pytest.mark.parametrize(("name", "command"), _commands(main))
def test_every_command_and_option_is_explained(name: str, command: click.Command) -> None:
    assert command.help, f"`rum-pipeline {name}` has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"`rum-pipeline {name} {param.opts[0]}` has no help text"
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output


def test_bad_setting_is_one_clear_error() -> None:
    result = CliRunner().invoke(main, ["topics", "create"], env={"RUM_PARTITIONS": "-1"})
    assert result.exit_code != 0
    assert "RUM_PARTITIONS" in result.output
    assert "Traceback" not in result.output


def test_produce_needs_a_source() -> None:
    result = CliRunner().invoke(main, ["produce"])
    assert result.exit_code == 2
    assert "--generate" in result.output


@pytest.mark.parametrize("span", ["7x", "-1s", "1 h", ""])
def test_produce_rejects_a_bad_span_before_connecting(span: str) -> None:
    result = CliRunner().invoke(main, ["produce", "--generate", "5", "--span", span])
    assert result.exit_code == 2
    assert "--span" in result.output and "bad duration" in result.output
    assert "Traceback" not in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_worker_without_kafka_exits_quickly_with_one_line(tmp_path: Path) -> None:
    env = {
        "RUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}",
        "RUM_DATA_DIR": str(tmp_path / "state"),
        "PATH": "/usr/bin:/bin",
    }
    started = time.monotonic()
    done = subprocess.run([CLI, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert elapsed < 30
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "cannot reach Kafka" in lines[0]


def test_config_check_names_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "rollups.yaml"
    bad.write_text(
        'rollups:\n  - name: x\n    filter: "@a:b)"\n    aggregations: [count, p42]\n    intervals: [1x]\n'
    )
    result = CliRunner().invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "rollups[0] (x).filter: unexpected ')' at column 5" in result.output
    assert "rollups[0] (x).aggregations[1]: unknown aggregation 'p42'" in result.output
    assert "rollups[0] (x).intervals[0]: bad interval '1x'" in result.output


def test_config_check_accepts_the_default_config() -> None:
    result = CliRunner().invoke(main, ["config", "check"], env={"RUM_ROLLUPS_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert "rollup cart_value_by_country" in result.output


def test_worker_refuses_a_bad_rollup_config(tmp_path: Path) -> None:
    bad = tmp_path / "rollups.yaml"
    bad.write_text("rollups:\n  - name: x\n    aggregations: [count]\n    intervals: [0m]\n")
    env = {
        "RUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}",
        "RUM_ROLLUPS_CONFIG": str(bad),
        "PATH": "/usr/bin",
    }
    done = subprocess.run([CLI, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "rollups[0] (x).intervals[0]" in done.stderr


def test_worker_names_a_data_directory_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {"RUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}", "RUM_DATA_DIR": str(blocker / "state")}
    done = subprocess.run([CLI, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert f"cannot create the data directory {blocker / 'state'}" in done.stderr
    assert "Traceback" not in done.stderr


def test_tune_garbage_collector_sets_thresholds_and_freezes_start_up_objects() -> None:
    import gc

    from pipeline.cli import tune_garbage_collector

    before = gc.get_threshold()
    try:
        tune_garbage_collector(None)
        assert gc.get_threshold() == before
        tune_garbage_collector((12_345, 20, 300))
        assert gc.get_threshold() == (12_345, 20, 300)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _shown(output: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in output.splitlines() if line.strip()}


def test_set_wins_over_the_environment() -> None:
    runner = CliRunner()
    env = {"RUM_PARTITIONS": "3", "RUM_LOG__FORMAT": "json"}
    result = runner.invoke(main, ["--set", "kafka.partitions=5", "--set", "app_id=cli", "settings"], env=env)
    assert result.exit_code == 0, result.output
    shown = _shown(result.output)
    assert (shown["kafka.partitions"], shown["kafka.app_id"], shown["log.format"]) == ("5", "cli", "json")
    assert shown["enrich.geo.cache_size"] == "50000"


def test_a_bad_set_is_one_clear_error() -> None:
    result = CliRunner().invoke(main, ["--set", "kafka.partitions", "settings"])
    assert result.exit_code == 2 and "SETTING=VALUE" in result.output
    result = CliRunner().invoke(main, ["--set", "kafka.partitons=3", "settings"])
    assert result.exit_code == 1 and "kafka.partitons" in result.output
    result = CliRunner().invoke(main, ["--set", "kafka.partitions=none", "settings"])
    assert result.exit_code == 1
    assert "kafka.partitions (RUM_KAFKA__PARTITIONS or RUM_PARTITIONS)" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["web_port", "worker.web_port"])
def test_a_command_option_wins_over_a_set_of_either_name(name: str) -> None:
    # What `rum-pipeline --set web_port=1 worker --web-port 2` merges, short of starting the worker.
    from pipeline.cli import _assignments, _settings

    given = click.Context(main).invoke(_assignments, ctx=None, param=None, values=(f"{name}=1",))
    assert given == {"worker.web_port": "1"}
    with click.Context(main, obj=given):
        assert _settings(web_port=2).worker.web_port == 2
        assert _settings(web_port=None).worker.web_port == 1
