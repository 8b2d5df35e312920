"""A webhook URL's credentials (a password, query tokens) stay out of messages and logs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.monitors.model import redact_url
from tests.monitors.test_config import monitor, only_error, text_of


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example/rum", "https://hooks.example/rum"),
        ("https://bot:s3cret@hooks.example/rum", "https://bot:****@hooks.example/rum"),
        ("https://s3cret@hooks.example:8443", "https://****@hooks.example:8443"),
        ("https://hooks.example/rum?token=s3cret&x=1#top", "https://hooks.example/rum?token=****&x=****#top"),
        ("https://a:b@c@hooks.example/?s3cret", "https://a:****@hooks.example/?s3cret"),
        ("hooks.example/x", "hooks.example/x"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_bad_webhook_url_is_named_without_its_credentials() -> None:
    error = only_error(monitor(webhook={"url": "ftp://bot:s3cret@hooks.example/x?token=t0ken"}))
    assert "bad URL 'ftp://bot:****@hooks.example/x?token=****'" in error
    assert "s3cret" not in error and "t0ken" not in error


def test_an_unreachable_webhook_is_named_without_its_credentials(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        down = f"http://bot:s3cret@127.0.0.1:{closed.getsockname()[1]}/hook?token=t0ken"
        path = tmp_path / "rollups.yaml"
        path.write_text(text_of(monitor(webhook={"url": down})))
        probed = CliRunner().invoke(main, ["config", "check", "--probe-webhooks", str(path)])
    assert probed.exit_code == 1
    assert "webhook.url 'http://bot:****@127.0.0.1:" in probed.output
    assert "s3cret" not in probed.output and "t0ken" not in probed.output


async def test_a_failed_delivery_is_logged_without_the_credentials(caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.monitors.model import Webhook
    from pipeline.monitors.webhook import WebhookNotifier
    from tests.monitors.test_webhook import an_event, free_port

    notifier = WebhookNotifier(backoff_s=0.01)
    url = f"http://bot:s3cret@127.0.0.1:{free_port()}/x?token=t0ken"
    notifier.submit(Webhook(url, timeout_s=2, retries=0), an_event())
    await notifier.drain()
    await notifier.close()
    assert notifier.stats.failed == 1
    assert "failed after 1 attempt" in caplog.text and "bot:****@127.0.0.1" in caplog.text
    assert "s3cret" not in caplog.text and "t0ken" not in caplog.text
