"""Client address: TCP peer, or X-Forwarded-For behind trusted proxies only."""

from __future__ import annotations

import pytest

from pipeline.intake.clientip import client_ip
from pipeline.intake.config import parse_networks

TRUSTED = parse_networks("10.0.0.0/8,127.0.0.1,2001:db8::/32")


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("81.2.69.142", [], "81.2.69.142"),
        # An untrusted peer is the client, whatever it writes in the header.
        ("81.2.69.142", ["1.1.1.1"], "81.2.69.142"),
        ("10.0.0.5", ["81.2.69.142"], "81.2.69.142"),
        # The right-most untrusted address wins: the left part can be forged by the client.
        ("10.0.0.5", ["6.6.6.6, 81.2.69.142, 10.1.2.3"], "81.2.69.142"),
        ("10.0.0.5", ["6.6.6.6", "81.2.69.142, 10.1.2.3"], "81.2.69.142"),  # header given twice
        ("127.0.0.1", ["81.2.69.142:51234"], "81.2.69.142"),
        ("127.0.0.1", ["[2a02:c7f::1]:443"], "2a02:c7f::1"),
        # Every hop trusted: the left-most is the best we know.
        ("10.0.0.5", ["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
        # Garbage stops the walk at the last trusted hop.
        ("10.0.0.5", ["81.2.69.142, unknown"], "10.0.0.5"),
        ("10.0.0.5", [], "10.0.0.5"),
        ("::ffff:10.0.0.5", ["81.2.69.142"], "81.2.69.142"),  # IPv4 peer on a dual-stack socket
        ("2001:db8::7", ["2a02:c7f::1"], "2a02:c7f::1"),
        (None, ["81.2.69.142"], None),
    ],
)
def test_client_ip(peer: str | None, xff: list[str], expected: str | None) -> None:
    assert client_ip(peer, xff, TRUSTED) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_ip("127.0.0.1", ["81.2.69.142"], ()) == "127.0.0.1"
