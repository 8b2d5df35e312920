"""The browser SDK's own unit tests (tests/sdk/*.test.mjs), run with Node's built-in test runner."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SDK_TESTS = sorted((ROOT / "tests" / "sdk").glob("*.test.mjs"))


def test_sdk_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("RUM_REQUIRE_BROWSER"):
            pytest.fail("node is not installed, and RUM_REQUIRE_BROWSER is set")
        pytest.skip("node is not installed: the browser SDK's tests need Node.js 18+")
    assert SDK_TESTS, "no tests/sdk/*.test.mjs found"
    run = subprocess.run(
        [node, "--test", *map(str, SDK_TESTS)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    report = run.stdout + run.stderr
    summary = dict(re.findall(r"^# (pass|fail|cancelled) (\d+)$", report, re.MULTILINE))
    failures = "\n".join(line for line in report.splitlines() if line.lstrip().startswith("not ok"))
    assert run.returncode == 0, f"node --test failed:\n{failures}\n{report[-4000:]}"
    assert int(summary.get("pass", 0)) > 0 and summary.get("fail") == "0", report[-2000:]
