"""Every input the fuzz campaign kept, and every hostile class at the limits' edges, still passes the checks.

The campaign also times inputs; tests never do, so an input kept for being
slow replays here only for the properties that do not depend on time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.process import Processor
from pipeline.settings import load_settings
from tests.fuzz import hostile
from tests.fuzz.campaign import LIMIT, load_corpus
from tests.fuzz.checks import TARGETS, Sizes, check

KEPT = load_corpus()


@pytest.fixture(scope="module")
def processor(test_mmdb: Path) -> Processor:
    return Processor(load_settings({"RUM_GEOIP_DATABASE": str(test_mmdb), "RUM_IP_POLICY": "truncate"}))


@pytest.mark.parametrize(
    ("target", "data", "found"), KEPT, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(KEPT)]
)
def test_kept_input(processor: Processor, target: str, data: bytes, found: str) -> None:
    assert target in TARGETS
    check(processor, target, data, Sizes())


@pytest.mark.parametrize("name", sorted(hostile.CLASSES))
@pytest.mark.parametrize("size", [0, LIMIT - 400, LIMIT + 1])
def test_hostile_class_at_the_limits(processor: Processor, name: str, size: int) -> None:
    sizes = Sizes()
    check(processor, "process", hostile.CLASSES[name](1, size), sizes)
    assert sizes.largest  # one output was checked


def test_hostile_classes_as_one_intake_body(processor: Processor) -> None:
    body = b"\n".join(make(2, 300) for make in hostile.CLASSES.values())
    assert check(processor, "ndjson", body, Sizes()) == len(hostile.CLASSES)
