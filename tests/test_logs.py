"""Log set-up (text and JSON lines), and the rule that no payload content reaches a log."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import maxminddb
import orjson
import pytest

from pipeline.enrich import build_enrichments
from pipeline.enrich.base import Warning
from pipeline.enrich.geo import without_addresses
from pipeline.errors import ConfigError
from pipeline.logs import JsonFormatter, TextFormatter, configure_logging
from pipeline.process import Processor
from pipeline.settings import load_settings
from tests.factory import raw_action
from tests.mmdb_fixture import build_test_mmdb


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Restore the root logger's handlers and level after a test that configures logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _record(msg: str, *args: Any, level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("pipeline.test", level, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_time_level_logger_message_and_extra_fields() -> None:
    line = JsonFormatter().format(_record("partition %d restored", 3, port=9464, path=Path("/x")))
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "pipeline.test"
    assert entry["message"] == "partition 3 restored"
    assert entry["port"] == 9464
    assert entry["path"] == "/x"  # any object: its text form
    assert entry["time"].endswith("Z") and entry["time"][:2] == "20"
    assert set(entry) == {"time", "level", "logger", "message", "port", "path"}


def test_json_is_one_line_even_for_multiline_messages_and_tracebacks() -> None:
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "table:\n a | b", None, exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "table:\n a | b"
    assert "ValueError: first\nsecond" in entry["exception"]


def test_extra_field_never_hides_a_standard_one() -> None:
    # "logger" is not a LogRecord attribute, so a caller may pass it as extra; the real one wins.
    entry = json.loads(JsonFormatter().format(_record("m", logger="spoofed")))
    assert entry["logger"] == "pipeline.test"


def test_text_line_appends_extra_fields() -> None:
    line = TextFormatter().format(_record("metrics on port %d", 9464, port=9464))
    assert line.endswith("pipeline.test: metrics on port 9464 port=9464")
    assert "[INFO]" in line


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_follows_the_settings_and_replaces_only_its_own_handler() -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    out = io.StringIO()
    configure_logging(load_settings({"RUM_LOG_FORMAT": "json", "RUM_LOG_LEVEL": "warning"}), stream=out)
    configure_logging(load_settings({"RUM_LOG_FORMAT": "json", "RUM_LOG_LEVEL": "warning"}), stream=out)
    logging.getLogger("pipeline.x").info("hidden")
    logging.getLogger("pipeline.x").warning("shown %s", "once")
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["shown once"]  # one handler, not two
    assert other in logging.getLogger().handlers

    text = io.StringIO()
    configure_logging(load_settings({}), stream=text)
    logging.getLogger("pipeline.x").info("plain")
    assert text.getvalue().rstrip().endswith("[INFO] pipeline.x: plain")
    assert out.getvalue().count("\n") == 1  # the JSON handler was replaced


def test_unknown_log_format_is_a_named_setting_error() -> None:
    with pytest.raises(ConfigError, match="RUM_LOG_FORMAT"):
        load_settings({"RUM_LOG_FORMAT": "xml"})


def test_addresses_are_removed_from_log_text() -> None:
    text = "Error looking up 81.2.69.142. The search tree is corrupt (2001:db8::7) after 1.5 s"
    assert without_addresses(text) == "Error looking up <ip>. The search tree is corrupt (<ip>) after 1.5 s"


# -- nothing of an action's payload reaches a log -------------------------------------------

IP = "81.2.69.213"
UA = "ZzMarkerBrowser/7.3.1 (Marker OS 9; zz-ua-7Q)"
CONTEXT = "zz-context-secret-4417"
URL_TOKEN = "zz-url-token-9921"


def _corrupt_search_tree(path: Path) -> Path:
    """The test database with its search tree overwritten: every lookup fails with the IP in the message."""
    data = bytearray(path.read_bytes())
    with maxminddb.open_database(str(path)) as reader:
        meta = reader.metadata()
    tree_bytes = meta.node_count * meta.record_size * 2 // 8
    data[:tree_bytes] = b"\xff" * tree_bytes
    path.write_bytes(bytes(data))
    return path


class _Exploding:
    """An enrichment with a bug whose exception message quotes the action's context."""

    name: ClassVar[str] = "exploding"

    def enrich(self, event: dict[str, Any], warnings: list[Warning]) -> None:
        if event.get("context", {}).get("explode"):
            raise ValueError(f"cannot handle context {event['context']!r}")

    def stats(self) -> dict[str, float]:
        return {}


def _action(**overrides: Any) -> dict[str, Any]:
    """The typical action carrying the secrets that must never reach a log."""
    secrets: dict[str, Any] = {
        "view": {"id": "v-1", "url": f"https://shop.example/cart?t={URL_TOKEN}"},
        "context": {"secret": CONTEXT, "value": 42.12},
        "network": {"client": {"ip": IP}},
        "http": {"useragent": UA},
    }
    return raw_action(**{**secrets, **overrides})


@pytest.mark.usefixtures("root_logging")
def test_processing_never_logs_payload_contents(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    database = _corrupt_search_tree(build_test_mmdb(tmp_path / "corrupt.mmdb"))
    settings = load_settings(
        {"RUM_GEOIP_DATABASE": str(database), "RUM_LOG_FORMAT": "json", "RUM_MAX_MESSAGE_BYTES": "4000"}
    )
    out = io.StringIO()
    configure_logging(settings, level="debug", stream=out)
    processor = Processor(settings, [*build_enrichments(settings), _Exploding()])
    good = orjson.dumps(_action())
    inputs = [
        good,
        good,  # cached
        orjson.dumps(_action(http={"useragent": UA + " v2"}, network={"client": {"ip": "::ffff:" + IP}})),
        orjson.dumps(_action(context={"secret": CONTEXT, "explode": True})),  # enrichment bad row
        orjson.dumps(_action(date="yesterday")),  # schema bad row
        good[:-5],  # parse bad row
        b"\xff" + good,  # not UTF-8
        orjson.dumps(_action(context={"secret": CONTEXT, "pad": "x" * 5000})),  # size bad row
        orjson.dumps(_action(date=4102444800000)),  # far in the future: schema bad row
    ]
    with caplog.at_level(logging.DEBUG):
        outputs = [processor.process(p, topic="raw", partition=0, offset=i) for i, p in enumerate(inputs)]

    kinds = [o.bad_kind for o in outputs]
    assert kinds == [None, None, None, "enrichment", "schema", "parse", "parse", "size", "schema"]
    # The corrupt database made the geo lookup fail and log: the path under test was taken.
    assert processor.stats()["geo"]["lookup_errors"] == 4  # the enrichment bad row went through geo too
    messages = [r.getMessage() for r in caplog.records]
    assert any("GeoIP lookup failed" in m for m in messages), messages
    written = out.getvalue() + "\n".join(messages)
    for secret in (IP, UA, "ZzMarkerBrowser", CONTEXT, URL_TOKEN):
        assert secret not in written, f"{secret!r} reached the log: {written}"
    for line in out.getvalue().splitlines():
        json.loads(line)
