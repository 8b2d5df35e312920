"""Content encodings and bounded decompression."""

from __future__ import annotations

import gzip
import zlib

import pytest

from pipeline.intake.body import BodyError, content_encoding, decompress
from tests.intake.conftest import sdk_deflate

LINES = [b'{"type":"action","n":%d}\n' % i for i in range(50)]


def test_sdk_style_deflate_round_trips() -> None:
    data = sdk_deflate(LINES)
    assert data[:1] == b"\x78"  # zlib-framed, as the SDK's worker sends it
    assert decompress(data, "deflate", 1 << 20) == b"".join(LINES)


def test_raw_deflate_and_gzip_are_accepted_too() -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = raw.compress(b"".join(LINES)) + raw.flush()
    assert decompress(data, "deflate", 1 << 20) == b"".join(LINES)
    assert decompress(gzip.compress(b"".join(LINES)), "gzip", 1 << 20) == b"".join(LINES)


def test_a_deflate_bomb_stops_at_the_limit() -> None:
    bomb = zlib.compress(b"\0" * (200 * 1024 * 1024), 9)  # 200 MiB of zeros in ~200 KB
    assert len(bomb) < 300_000
    with pytest.raises(BodyError) as caught:
        decompress(bomb, "deflate", 5 * 1024 * 1024)
    assert caught.value.status == 413


def test_output_of_exactly_the_limit_is_fine() -> None:
    data = zlib.compress(b"a" * 1000)
    assert len(decompress(data, "deflate", 1000)) == 1000
    with pytest.raises(BodyError):
        decompress(data, "deflate", 999)


@pytest.mark.parametrize("data", [b"not deflate at all", zlib.compress(b"x" * 100)[:-6]])
def test_corrupt_or_truncated_streams_are_400(data: bytes) -> None:
    with pytest.raises(BodyError) as caught:
        decompress(data, "deflate", 1 << 20)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({}, {}, None),
        ({}, {"dd-evp-encoding": "deflate"}, "deflate"),
        ({"Content-Encoding": "gzip"}, {}, "gzip"),
        ({"Content-Encoding": "identity"}, {}, None),
        ({"Content-Encoding": "deflate"}, {"dd-evp-encoding": "deflate"}, "deflate"),
    ],
)
def test_content_encoding(headers: dict, query: dict, expected: str | None) -> None:
    assert content_encoding(headers, query) == expected


@pytest.mark.parametrize(
    ("headers", "query"),
    [({"Content-Encoding": "br"}, {}), ({"Content-Encoding": "gzip"}, {"dd-evp-encoding": "deflate"})],
)
def test_unsupported_or_conflicting_encodings_are_415(headers: dict, query: dict) -> None:
    with pytest.raises(BodyError) as caught:
        content_encoding(headers, query)
    assert caught.value.status == 415
