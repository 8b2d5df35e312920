"""The charting library in pipeline/serve/static/vendor/ is the npm package pinned in web/, unchanged."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "pipeline" / "serve" / "static" / "vendor" / "uplot"
RECORD = json.loads((VENDOR / "VENDORED.json").read_text())
WEB = ROOT / "web"


def test_vendored_files_are_those_recorded_for_the_pinned_version() -> None:
    pinned = json.loads((WEB / "package.json").read_text())["dependencies"][RECORD["package"]]
    lock = json.loads((WEB / "package-lock.json").read_text())
    locked = lock["packages"][f"node_modules/{RECORD['package']}"]
    assert RECORD["version"] == pinned == locked["version"]
    assert RECORD["integrity"] == locked["integrity"]
    files = {p.name for p in VENDOR.iterdir()} - {"VENDORED.json"}
    assert files == set(RECORD["sha256"]) == set(RECORD["from"])
    for name, digest in RECORD["sha256"].items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (VENDOR / "LICENSE").read_text() and RECORD["license"] == "MIT"


def test_vendored_files_equal_the_installed_package() -> None:
    installed = WEB / "node_modules" / RECORD["package"]
    if not installed.is_dir():
        message = "web/node_modules is not installed: run `make browser` (npm ci in web/)"
        if os.environ.get("RUM_REQUIRE_BROWSER"):
            pytest.fail(f"{message}; RUM_REQUIRE_BROWSER is set, so this is a failure")
        pytest.skip(message)
    assert json.loads((installed / "package.json").read_text())["version"] == RECORD["version"]
    for name, source in RECORD["from"].items():
        same = (VENDOR / name).read_bytes() == (installed / source).read_bytes()
        assert same, f"{name} differs from {source} of the installed package"
