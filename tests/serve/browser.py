"""Driving the explorer page in headless Chromium (tests/browser/explorer.mjs) from pytest.

Needs /usr/bin/chromium and tests/browser/node_modules (``make browser``). Without
them the tests that use ``require_browser`` are skipped, unless RUM_REQUIRE_BROWSER
is set (as ``make test`` does): then they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "browser"
CHROMIUM = Path(os.environ.get("RUM_CHROMIUM", "/usr/bin/chromium"))


def missing_browser(modules: tuple[str, ...] = ("playwright-core",)) -> list[str]:
    """What the real-browser tests need and this machine lacks; ``modules``: the node packages they use."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node (Node.js 18+)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (Debian's chromium package)")
    if not all((BROWSER_DIR / "node_modules" / module).is_dir() for module in modules):
        missing.append("tests/browser/node_modules (npm ci in tests/browser)")
    return missing


def require_browser(modules: tuple[str, ...] = ("playwright-core",)) -> None:
    """Skip the calling test when the browser is missing, or fail with RUM_REQUIRE_BROWSER set."""
    missing = missing_browser(modules)
    if not missing:
        return
    message = f"real-browser tests need {', '.join(missing)}: run `make browser` (scripts/install-browser.sh)"
    if os.environ.get("RUM_REQUIRE_BROWSER"):
        pytest.fail(f"{message}; RUM_REQUIRE_BROWSER is set, so this is a failure")
    pytest.skip(message)


@dataclass
class Site:
    """A running `serve` (or the page's routes): its base URL, its environment, a folder for artifacts."""

    env: dict[str, str]
    url: str
    tmp: Path


def drive(site: Site, steps: list[dict[str, Any]], *extra: str) -> dict[str, Any]:
    """Run tests/browser/explorer.mjs; its JSON report (screenshots under ``site.tmp``, printed)."""
    shots = site.tmp / "screenshots"
    shots.mkdir(exist_ok=True)
    node = shutil.which("node") or "node"
    args = [node, "explorer.mjs", "--url", site.url, "--out", str(shots), "--steps", json.dumps(steps)]
    run = subprocess.run(
        [*args, *extra], cwd=BROWSER_DIR, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, f"explorer.mjs failed ({run.returncode}):\n{run.stderr}\n{run.stdout[-4000:]}"
    print(f"explorer screenshots: {shots}")
    return json.loads(run.stdout)


def check_clean(report: dict[str, Any], site: Site) -> None:
    """No console error or warning, no exception, no failed request, nothing asked of another origin."""
    assert report["origins"] == [site.url], report["origins"]
    assert not report["page_errors"], report["page_errors"]
    assert not [m for m in report["console"] if m["type"] in ("error", "warning")], report["console"]
    assert not report["failed"], report["failed"]


@contextmanager
def running_app(app: web.Application) -> Iterator[str]:
    """``app`` served on a free port of 127.0.0.1 by a thread of its own; its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
