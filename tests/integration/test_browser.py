"""Real browsers end to end: a shop page in headless Chromium -> intake -> Kafka -> worker -> enriched.

One page uses Datadog's own browser SDK (@datadog/browser-rum, pointed at the
intake with its ``proxy`` option), the other the repository's ``sdk/rum.js``.
Each page is served from its own origin, so the requests to the intake are
cross-origin and CORS is exercised by Chromium itself. The pages set a global
context property and a user, click "Checkout" (``addAction('checkout', {value:
42.12, items: [...]})``) and leave through "Continue shopping", which records a
second action that goes out with the batch sent as the page is left.

Needs /usr/bin/chromium and tests/browser/node_modules (``make browser``).
Skipped without them unless RUM_REQUIRE_BROWSER is set, as ``make test`` does.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.consume import assign_topics, make_reader
from pipeline.intake.child import running_intake
from pipeline.schemas import validate_record
from pipeline.settings import Settings
from pipeline.topics import BAD, ENRICHED, RAW
from tests.chaos_helpers import delete_topics
from tests.kafka_helpers import CLI, isolated_env, run_worker, settings_from
from tests.serve.browser import BROWSER_DIR, CHROMIUM, ROOT, require_browser

pytestmark = pytest.mark.kafka

CLIENT_TOKEN = "pub-shop-test"
#: A desktop Chrome user agent for the page that runs as an ordinary visitor's browser.
DESKTOP_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{major}.0.0.0 Safari/537.36"
)
ACTIONS = {"checkout", "continue-shopping"}


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    require_browser(("playwright-core", "@datadog/browser-rum"))


def _wait_for_line(log: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    """The first match of ``pattern`` in a child's log, waiting for it to be printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"), re.MULTILINE)
        if found:
            return found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(
        f"no line matching {pattern!r} from {process.args}:\n{log.read_text(errors='replace')}"
    )


@contextmanager
def _child(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process for the duration of the block, its output in ``log``; stopped with SIGTERM."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Shop:
    """A worker, the intake and the shop's static server, all running."""

    env: dict[str, str]
    settings: Settings
    intake_url: str
    static_url: str
    tmp: Path


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("browser")
    node = shutil.which("node") or "node"
    env = isolated_env(tmp)
    created = subprocess.run([CLI, "topics", "create"], env=env, capture_output=True, text=True, check=False)
    assert created.returncode == 0, f"topics create failed:\n{created.stdout}{created.stderr}"
    static_log = tmp / "static.log"
    with _child([node, "serve.mjs", "--port", "0"], env, static_log, cwd=BROWSER_DIR) as static:
        static_url = _wait_for_line(static_log, r"^static: listening on (http://\S+)$", static, 30)
        intake_env = {
            **env,
            "RUM_INTAKE_HOST": "127.0.0.1",
            "RUM_INTAKE_CLIENT_TOKENS": f"{CLIENT_TOKEN}=shop",
            # Only the shop's origin may read the intake's answers: a real CORS check.
            "RUM_INTAKE_CORS_ORIGINS": static_url,
        }
        with running_intake(intake_env, tmp / "intake.log", timeout=60) as intake:
            with run_worker(env, tmp / "worker.log") as worker:
                yield Shop(env, settings_from(env), intake.url, static_url, tmp)
                assert worker.process.poll() is None, worker.tail()
            assert intake.process.poll() is None, intake.output()
    # The shared broker keeps files open for every partition: leave it no topics of ours.
    delete_topics(settings_from(env))


def _drive(shop: Shop, page: str, user_agent: str | None = None) -> dict[str, Any]:
    """Run tests/browser/drive.mjs on ``page``; its JSON report."""
    node = shutil.which("node") or "node"
    args = [node, "drive.mjs", "--intake", shop.intake_url, "--page", page, "--base", shop.static_url]
    args += ["--client-token", CLIENT_TOKEN, "--env", "test", "--screenshot", str(shop.tmp / f"{page}.png")]
    if user_agent:
        args += ["--user-agent", user_agent]
    run = subprocess.run(args, cwd=BROWSER_DIR, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"drive.mjs failed ({run.returncode}):\n{run.stderr}\n{run.stdout}"
    return json.loads(run.stdout)


async def _read_actions(settings: Settings, topic: str, page_url: str, expected: int, timeout: float) -> list:
    """Records of ``topic`` whose view.url is ``page_url``, once ``expected`` of them arrived."""
    consumer = make_reader(settings)
    await consumer.start()
    try:
        await assign_topics(consumer, [topic])
        found: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    view = orjson.loads(record.value).get("view") or {}
                    if view.get("url") == page_url:
                        found.append(record)
            if len(found) >= expected:
                # Stray extra records would be a failure too: give them a moment to show up.
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    found += [
                        r for r in records if (orjson.loads(r.value).get("view") or {}).get("url") == page_url
                    ]
                break
        return found
    finally:
        await consumer.stop()


def _enriched_actions(shop: Shop, report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The page's two enriched actions by name, each valid against its schema and keyed by its session."""
    settings = shop.settings
    url = report["page_url"]
    records = asyncio.run(_read_actions(settings, settings.topic(ENRICHED), url, len(ACTIONS), 90))
    if len(records) != len(ACTIONS):
        raw = asyncio.run(_read_actions(settings, settings.topic(RAW), url, len(ACTIONS), 5))
        bad = asyncio.run(_read_actions(settings, settings.topic(BAD), url, 1, 5))
        raise AssertionError(
            f"{len(records)} enriched actions for {url}, expected {len(ACTIONS)}; raw: {len(raw)}, bad rows: "
            f"{[orjson.loads(r.value).get('errors') for r in bad]}; driver report: {json.dumps(report)}"
        )
    events = {}
    for record in records:
        event = orjson.loads(record.value)
        assert validate_record("enriched-action.v1", event) == []
        assert record.key == event["session"]["id"].encode()
        events[event["action"]["target"]["name"]] = event
    assert set(events) == ACTIONS
    return events


def _check_shop_actions(events: dict[str, dict[str, Any]], report: dict[str, Any], started_ms: int) -> None:
    """What both SDKs must deliver: names, contexts, user, page, session and the intake's stamps."""
    checkout, leave = events["checkout"], events["continue-shopping"]
    assert checkout["action"]["type"] == "custom"
    # The action's own context, merged over the global context the page set.
    assert checkout["context"] == {"store": "paris-01", "value": 42.12, "items": ["tomato", "strawberries"]}
    assert leave["context"] == {"store": "paris-01"}
    for event in (checkout, leave):
        assert event["application"]["id"] == "shop"
        assert event["service"] == "shop-web"
        assert event["version"] == "1.4.2"
        assert {k: event["usr"][k] for k in ("id", "name", "email")} == {
            "id": "u-42",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
        }
        assert event["view"]["url"] == report["page_url"]
        assert event["view"]["url_host"] == "127.0.0.1"
        assert event["view"]["url_path"] == "/" + report["page_url"].rsplit("/", 1)[1]
        # Client time of the click, not the time the intake or the worker saw it.
        assert (
            started_ms <= event["date"] <= event["intake"]["received_at"] <= event["pipeline"]["received_at"]
        )
        # Stamped by the intake from the connection and the request headers.
        assert event["network"]["client"]["ip"] == "127.0.0.1"
        assert event["http"]["useragent"] == report["user_agent"]
        assert "geo" not in event  # a loopback address has no location, and that is no error
        assert event["os"]["name"] == "Linux"
        assert event["device"]["type"] == "desktop"
        assert event["browser"]["version_major"] == int(report["browser_version"].split(".")[0])
    assert checkout["session"]["id"] == leave["session"]["id"]
    assert checkout["view"]["id"] == leave["view"]["id"]
    assert checkout["date"] < leave["date"]


def _check_requests(report: dict[str, Any], origin: str) -> None:
    """Every answer the browser got from the intake was an acceptance the page's origin may read.

    A beacon sent while the page unloads is answered after the page is gone:
    the driver then sees it aborted, or its status without its headers, and
    only Kafka tells that it arrived.
    """
    posts = [r for r in report["requests"] if r["method"] == "POST"]
    assert posts, report
    for request in posts:
        if request["api"] == "beacon":
            assert request["status"] in (None, 202) and request["allow_origin"] in (None, origin), request
        else:
            assert (request["status"], request["allow_origin"]) == (202, origin), request
    assert not [m for m in report["console"] if m["type"] in ("error", "warning")], report["console"]


def test_datadog_browser_sdk_through_the_intake_proxy(shop: Shop) -> None:
    started_ms = int(time.time() * 1000)
    report = _drive(shop, "shop-datadog.html")
    _check_requests(report, shop.static_url)
    # The SDK's proxy option: POST <proxy>?ddforward=<the /api/v2/rum path and query>.
    assert all(r["url"].startswith(f"{shop.intake_url}/rum-proxy?ddforward=") for r in report["requests"])
    events = _enriched_actions(shop, report)
    _check_shop_actions(events, report, started_ms)
    # Chromium's own headless user agent, as sent: the parser calls it HeadlessChrome, a desktop browser.
    assert "HeadlessChrome/" in report["user_agent"]
    for event in events.values():
        assert event["browser"]["name"] == "HeadlessChrome"
        # Datadog's SDK carries env only in ddtags: the intake copies it to the top-level field.
        assert "env:test" in event["ddtags"].split(",")
        assert event["env"] == "test"
        assert event["usr"]["anonymous_id"]


def test_own_sdk_from_a_desktop_chrome(shop: Shop) -> None:
    version = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, check=True).stdout
    major = re.search(r"(\d+)\.\d+\.\d+\.\d+", version)
    assert major, version
    user_agent = DESKTOP_CHROME.format(major=major.group(1))
    started_ms = int(time.time() * 1000)
    report = _drive(shop, "shop-sdk.html", user_agent)
    _check_requests(report, shop.static_url)
    assert report["user_agent"] == user_agent
    # The checkout goes with fetch (the page flushes before leaving): its answer was readable cross-origin.
    fetched = [r for r in report["requests"] if r["api"] == "fetch"]
    assert fetched and all(r["url"].startswith(f"{shop.intake_url}/api/v2/rum?") for r in fetched), report
    assert all(r["status"] == 202 for r in fetched), fetched
    events = _enriched_actions(shop, report)
    _check_shop_actions(events, report, started_ms)
    for event in events.values():
        assert event["browser"]["name"] == "Chrome"
        assert event["env"] == "test"
        assert set(event["usr"]) == {"id", "name", "email"}
        assert event["view"]["referrer"] == ""
