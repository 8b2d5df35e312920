"""A time-bounded fuzz campaign over the processor and the intake's request parsing.

    python -m tests.fuzz.campaign --seconds 600      (make fuzz, FUZZ_SECONDS)

Inputs come from hypothesis strategies (arbitrary bytes, action-shaped JSON
with hostile values, the hostile classes of tests/fuzz/hostile.py at any size
up to past the limits, byte-level mutations of them, NDJSON bodies,
compressed bodies) in rounds until the time is spent. Every input goes
through the checks of tests/fuzz/checks.py, and is timed: one taking more
than 50 ms while below the size limit is timed twice more, and counts as a
finding only if every run was slow. Times are the process's CPU time, so
that other processes sharing the machine do not count.

Any input that found something is kept in tests/fuzz/corpus/ (replayed by
tests/fuzz/test_corpus.py and at the start of every campaign) and the
campaign exits 1. At the end it prints the inputs tried per target, the
slowest input below the limit and the largest output per topic.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.process import Processor
from pipeline.settings import load_settings
from tests.fuzz import hostile
from tests.fuzz.checks import Finding, Sizes, check
from tests.mmdb_fixture import build_test_mmdb

CORPUS = Path(__file__).with_name("corpus")
SLOW_SECONDS = 0.050
#: Inputs kept in the corpus per cause found (the first ones; later ones add nothing).
MAX_KEPT_PER_KIND = 2
#: The raw size limit (RUM_MAX_MESSAGE_BYTES default): inputs below it must be fast.
LIMIT = 1024 * 1024


@dataclass
class Tally:
    """What the campaign saw."""

    tried: dict[str, int] = field(default_factory=dict)
    #: Per target: (seconds per event, bytes, origin) of the slowest input below the limit.
    slowest: dict[str, tuple[float, int, str]] = field(default_factory=dict)
    sizes: Sizes = field(default_factory=Sizes)
    #: Findings grouped by cause (figures left out), with how often each was seen.
    findings: dict[str, int] = field(default_factory=dict)


def save(target: str, data: bytes, why: str) -> Path:
    """Keep an input that found something, as JSON (target, input in base64, what it found)."""
    CORPUS.mkdir(exist_ok=True)
    name = f"{target}-{hashlib.sha1(data).hexdigest()[:16]}.json"
    entry = {"target": target, "input": base64.b64encode(data).decode(), "found": why[:2000]}
    path = CORPUS / name
    path.write_bytes(orjson.dumps(entry, option=orjson.OPT_INDENT_2))
    return path


def load_corpus() -> list[tuple[str, bytes, str]]:
    """Every kept input: (target, bytes, what it found)."""
    entries = []
    for path in sorted(CORPUS.glob("*.json")):
        entry = orjson.loads(path.read_bytes())
        entries.append((entry["target"], base64.b64decode(entry["input"]), entry["found"]))
    return entries


def _kind(finding: str) -> str:
    """A finding without its figures, to group repeats of one cause."""
    return re.sub(r"[0-9.]+", "N", finding)


def run_one(processor: Processor, tally: Tally, target: str, data: bytes, origin: str) -> None:
    """Check one input, time it, and record a finding in the corpus.

    The time budget is SLOW_SECONDS per event the input holds (an intake
    body holds many), at least one; inputs at or over LIMIT are not timed.
    """
    tally.tried[target] = tally.tried.get(target, 0) + 1
    clock = time.process_time  # CPU time: other processes on a shared machine do not count
    try:
        start = clock()
        events = check(processor, target, data, tally.sizes)
        elapsed = clock() - start
        budget = SLOW_SECONDS * max(1, events)
        if len(data) < LIMIT and elapsed > budget:
            for _ in range(2):  # slow every time, or a collection or a cold cache?
                start = clock()
                check(processor, target, data, Sizes())
                elapsed = min(elapsed, clock() - start)
            if elapsed > budget:
                raise Finding(f"took {elapsed * 1000:.1f} ms for {len(data)} bytes holding {events} events")
        per_event = elapsed / max(1, events)
        if len(data) < LIMIT and per_event > tally.slowest.get(target, (0.0, 0, ""))[0]:
            tally.slowest[target] = (per_event, len(data), origin)
    except Finding as finding:
        _found(tally, target, data, str(finding), origin)
    except Exception:  # a bug of the checks themselves is a finding too
        _found(tally, target, data, traceback.format_exc(), origin)


def _found(tally: Tally, target: str, data: bytes, finding: str, origin: str) -> None:
    kind = f"{target}: {_kind(finding.splitlines()[-1] if finding else finding)}"
    tally.findings[kind] = tally.findings.get(kind, 0) + 1
    if tally.findings[kind] <= MAX_KEPT_PER_KIND and origin != "corpus":
        save(target, data, f"{finding} [{origin}]")


# --- strategies -----------------------------------------------------------------------------


def _dumps(obj: Any) -> bytes:
    """JSON bytes of ``obj``, big integers and lone surrogates included (orjson refuses both)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


BIG_INTS = st.integers(min_value=-(10**40), max_value=10**40)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x3000), min_size=200, max_size=3000),
    st.sampled_from(["é" * 5000, "\x01" * 3000, "\\" * 2000, "%" * 1000, "@" * 500, "9" * 600]),
)
JSON = st.recursive(
    st.none() | st.booleans() | BIG_INTS | st.floats(allow_nan=False, allow_infinity=False) | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
URLS = st.builds(
    lambda scheme, sep, cred, host, path, query, frag: f"{scheme}:{sep}{cred}{host}{path}{query}{frag}",
    st.sampled_from(["https", "HTTP", "ftp", "ws", "file", "android-app", "mailto", "javascript"]),
    st.sampled_from(["//", "\\\\", "/\\", "", "///", "/"]),
    st.sampled_from(["", "u:p@", "u@", "@", "a@b@", "%40@"]),
    st.sampled_from(
        [
            "shop.example",
            "BÜCHER.example",
            "xn--bcher-kva.example",
            "b%C3%BCcher.example",
            "[::1]",
            "[fe80::1%25eth0]",
            "\u0300a.example",
            "a。b",
            "",
            ":99999",
            "h:80",
            "ĸ" * 70,
        ]
    ),
    st.text(alphabet="/\\.a1%?#é", max_size=60),
    st.lists(st.text(alphabet="ab=&%+é", max_size=8), max_size=50).map(lambda p: "?" + "&".join(p)),
    st.sampled_from(["", "#", "#x", "#/a/1"]),
)
USER_AGENTS = st.one_of(
    st.sampled_from(hostile.CHROME.split("{major}")).map(lambda s: s),
    st.builds(lambda n: hostile.CHROME.format(major=n), st.integers(0, 10**60)),
    st.text(max_size=2000),
    st.builds(
        lambda n, c: "Mozilla/5.0 " + c * n, st.integers(0, 3000), st.sampled_from(["é", "日", "\x00", "a"])
    ),
)
ACTIONS = st.fixed_dictionaries(
    {"type": st.just("action"), "date": st.integers(0, 2**45), "action": st.just({"target": {"name": "x"}})},
    optional={
        "view": st.fixed_dictionaries({"url": URLS}, optional={"referrer": URLS}),
        "http": st.fixed_dictionaries({"useragent": USER_AGENTS}),
        "network": st.fixed_dictionaries({"client": st.fixed_dictionaries({"ip": st.text(max_size=80)})}),
        "context": st.dictionaries(st.text(max_size=8), JSON, max_size=8),
        "global_context": JSON,
        "session": st.fixed_dictionaries({"id": st.text(max_size=20)}),
    },
).map(lambda obj: _dumps(obj))
SIZES = st.one_of(st.integers(0, 5000), st.integers(0, LIMIT + 200_000), st.just(LIMIT - 400))
HOSTILE = st.builds(
    lambda name, i, size: hostile.CLASSES[name](i, size),
    st.sampled_from(sorted(hostile.CLASSES)),
    st.integers(0, 10**6),
    SIZES,
)


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for kind, where, chunk in edits:
        if not data:
            data = chunk
            continue
        at = where % len(data)
        if kind == 0:
            data = data[:at] + chunk + data[at:]
        elif kind == 1:
            data = data[:at] + data[at + len(chunk) :]
        else:
            data = data[:at] + chunk + data[at + len(chunk) :]
    return data


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2**31), st.binary(min_size=1, max_size=8)), max_size=6
)
SMALL_HOSTILE = st.builds(
    lambda name, i: hostile.CLASSES[name](i, 300),
    st.sampled_from(sorted(hostile.CLASSES)),
    st.integers(0, 1000),
)
MUTATED = st.builds(_mutate, st.one_of(SMALL_HOSTILE, ACTIONS), EDITS)
RAW = st.one_of(st.binary(max_size=2000), ACTIONS, HOSTILE, MUTATED)
LINES = st.lists(st.one_of(ACTIONS, MUTATED, st.binary(max_size=200), SMALL_HOSTILE), max_size=20)
NDJSON = st.builds(lambda lines, sep: sep.join(lines), LINES, st.sampled_from([b"\n", b"\r\n", b"\n\n"]))
ARRAYS = (
    st.builds(lambda items: b"[" + b",".join(items) + b"]", st.lists(ACTIONS, max_size=20))
    | ACTIONS
    | MUTATED
)


def _compress(body: bytes, target: str, how: int, cut: int) -> bytes:
    if target == "gzip":
        import gzip

        data = gzip.compress(body, mtime=0)  # the same body gives the same bytes (one corpus file)
    else:
        data = zlib.compress(body) if how % 2 else zlib.compressobj(wbits=-15).compress(body)
        if not how % 2:
            data += zlib.compressobj(wbits=-15).flush()
    return data[: len(data) - cut] if cut and how > 1 else data


def compressed(target: str) -> st.SearchStrategy[bytes]:
    """Compressed NDJSON bodies, some truncated, and bombs that inflate past the limit."""
    bodies = st.one_of(NDJSON, st.integers(1, 12).map(lambda mb: b"\n" * (mb << 20)))
    return st.builds(
        lambda b, how, cut: _compress(b, target, how, cut), bodies, st.integers(0, 3), st.integers(0, 5)
    ) | st.binary(max_size=300)


STRATEGIES: dict[str, st.SearchStrategy[bytes]] = {
    "process": RAW,
    "ndjson": NDJSON,
    "actions": ARRAYS,
    "deflate": compressed("deflate"),
    "gzip": compressed("gzip"),
}


def _round(processor: Processor, tally: Tally, target: str, end: float, origin: str) -> None:
    """One hypothesis run of ``target``'s strategy (200 inputs, or fewer when the time is up)."""

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(STRATEGIES[target])
    def one(data: bytes) -> None:
        if time.monotonic() < end:
            run_one(processor, tally, target, data, origin)

    one()


def campaign(seconds: float, processor: Processor, tally: Tally) -> None:
    """Rounds of every target's strategy until ``seconds`` have passed."""
    end = time.monotonic() + seconds
    round_no = 0
    while time.monotonic() < end:
        round_no += 1
        for target in STRATEGIES:
            if time.monotonic() < end:
                _round(processor, tally, target, end, f"round {round_no}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # hypothesis' notes on large reprs
    import tempfile

    db = build_test_mmdb(Path(tempfile.mkdtemp()) / "fuzz-city.mmdb")
    processor = Processor(load_settings({"RUM_GEOIP_DATABASE": str(db), "RUM_IP_POLICY": "truncate"}))
    tally = Tally()
    kept = load_corpus()
    for target, data, _ in kept:
        run_one(processor, tally, target, data, "corpus")
    for name, make in sorted(hostile.CLASSES.items()):  # every class at the limit's edges
        for size in (0, 300, LIMIT - 400, LIMIT + 1, 6_500_000):
            run_one(processor, tally, "process", make(0, size), f"hostile {name} {size}")
    started = time.monotonic()
    campaign(args.seconds, processor, tally)
    spent = time.monotonic() - started
    report: dict[str, Any] = {
        "seconds": round(spent, 1),
        "inputs_tried": tally.tried,
        "inputs_total": sum(tally.tried.values()),
        "corpus_replayed": len(kept),
        "slowest_below_limit": {
            target: {"ms_per_event": round(t * 1000, 2), "bytes": size, "origin": origin}
            for target, (t, size, origin) in tally.slowest.items()
        },
        "largest_output_bytes": tally.sizes.largest,
        "findings": tally.findings,
    }
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
